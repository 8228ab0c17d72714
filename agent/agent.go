// Package agent is the per-host daemon of shmreg: it follows one center of
// the mirrored pair, subscribed to the prefixes its host is interested in,
// and writes what the center pushes into the host's shared-memory region,
// where local processes read it without a socket.
//
// One goroutine, the follower, owns the region's content: it connects,
// subscribes, applies each pushed batch as one region commit (one wake-up
// of the readers per batch), fails over to the other center, and serves the
// control requests that change the region (subscribe, refresh). The control
// socket, the metrics endpoint and the registrations made on behalf of local
// processes run beside it.
//
// The region outlives the agent. The agent records in the region, in the
// same commit as the entries, the center and revision it has applied; a
// restarted agent resumes from there, and an agent that moves to the other
// center resyncs by diff, so readers never see an unchanged entry vanish.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// Errors a caller can act on.
var (
	// ErrNotConnected: the request needs a center and the agent has none.
	ErrNotConnected = errors.New("agent: not connected to a center")
	// ErrStopped: the agent is shutting down or was never started.
	ErrStopped = errors.New("agent: stopped")
	// ErrNotSubscribed: the key is not under a subscribed prefix.
	ErrNotSubscribed = errors.New("agent: key not under a subscribed prefix")
	// ErrRegion: the region cannot be written (it is full and cannot grow,
	// or its file system is full or failing). The error also wraps the
	// region's own (shm.ErrFull, shm.ErrNoSpace, an os error). The agent
	// keeps the region's last data and retries; see Status.RegionError.
	ErrRegion = errors.New("agent: the region cannot be written")
)

// Agent is a running agent. Create it with New, then Start and Shutdown (or
// Run, which does both).
type Agent struct {
	opts    Options
	log     *slog.Logger
	w       *shm.Writer
	r       *shm.Reader // the agent's own view of its region, for diffs
	state   string      // path of the subscription state file
	metrics *metrics
	reqs    chan *request // control requests for the follower

	f follower // owned by the follower goroutine

	mu      sync.Mutex // guards status, client, regs
	status  Status
	client  *registry.Client
	regs    map[string]bool // instance keys registered on behalf of local processes
	started bool
	stopped bool

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ctl     net.Listener
	httpSrv *http.Server
	httpLn  net.Listener
}

// Status is a snapshot of the agent's state, as reported by Agent.Status and
// the control socket's status operation.
type Status struct {
	Region     string    `json:"region"`      // data file path
	Centers    []string  `json:"centers"`     // configured addresses
	Connected  bool      `json:"connected"`   // a center connection is up
	CenterAddr string    `json:"center_addr"` // address of the current (or last) center
	Center     string    `json:"center"`      // id of the center the region follows
	Revision   uint64    `json:"revision"`    // last revision applied from Center
	Prefixes   []string  `json:"prefixes"`    // subscribed prefixes
	Entries    uint64    `json:"entries"`     // live entries in the region
	UsedBytes  uint64    `json:"used_bytes"`  // region bytes in use
	FreeBytes  uint64    `json:"free_bytes"`  // region pool bytes free
	Batches    uint64    `json:"batches"`     // batches applied since start
	Reconnects uint64    `json:"reconnects"`  // connections after the first
	Failovers  uint64    `json:"failovers"`   // moves to a different center
	Held       int       `json:"held"`        // suspect deletions held back
	Registered int       `json:"registered"`  // instances registered for local processes
	LastApply  time.Time `json:"last_apply"`  // when the last batch was committed
	LastResync Resync    `json:"last_resync"` // how the last snapshot was applied
	LastError  string    `json:"last_error,omitempty"`

	// RegionError is why the region cannot be written, while it cannot
	// (the agent keeps the last data and retries); empty while it can.
	RegionError string `json:"region_error,omitempty"`
	// RegionErrorSince is when the region first refused the commit the
	// agent is retrying; zero while the region can be written.
	RegionErrorSince time.Time `json:"region_error_since,omitzero"`
	// FailedCommits counts region commits that failed since the agent
	// started (first attempts and retries).
	FailedCommits uint64 `json:"failed_commits"`
}

// New opens (or creates) the region for writing and prepares the agent. It
// fails with an error wrapping shm.ErrWriterBusy if another agent (or any
// writer) has the region open.
func New(opts Options) (*Agent, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	w, err := shm.OpenWriter(opts.Region, opts.Shm)
	if err != nil {
		return nil, fmt.Errorf("agent: open region %s: %w", opts.Region, err)
	}
	r, err := shm.Open(w.Path(), opts.Shm)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("agent: open region %s for reading: %w", opts.Region, err)
	}
	a := &Agent{
		opts:  opts,
		log:   opts.Logger,
		w:     w,
		r:     r,
		state: statePath(w.Path()),
		reqs:  make(chan *request),
		regs:  make(map[string]bool),
	}
	a.metrics = newMetrics(w.Stat)
	st, err := loadState(a.state)
	if err != nil {
		a.closeRegion()
		return nil, err
	}
	a.f.init(a, st)
	a.status = Status{Region: w.Path(), Centers: opts.Centers, Prefixes: a.f.prefixes}
	a.status.Center, a.status.Revision = w.Place()
	return a, nil
}

func (a *Agent) closeRegion() {
	a.r.Close()
	a.w.Close()
}

// Start starts the follower, the control socket and the metrics endpoint.
// It returns once the sockets are listening; the connection to a center is
// made in the background (see Status).
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	if a.started || a.stopped {
		a.mu.Unlock()
		return fmt.Errorf("%w: Start called twice or after Shutdown", ErrStopped)
	}
	a.started = true
	a.mu.Unlock()
	a.ctx, a.cancel = context.WithCancel(ctx)
	if a.opts.Control != "" {
		ln, err := listenControl(a.opts.Control, a.opts.ControlMode)
		if err != nil {
			a.cancel()
			return err
		}
		a.ctl = ln
		a.goFunc(func() { a.serveControl(ln) })
	}
	if a.opts.Metrics != "" {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.opts.Metrics)
		if err != nil {
			a.cancel()
			if a.ctl != nil {
				a.ctl.Close()
			}
			a.wg.Wait()
			return fmt.Errorf("agent: metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
		a.httpLn = ln
		a.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		a.goFunc(func() { a.httpSrv.Serve(ln) })
	}
	a.goFunc(func() { a.f.run(a.ctx) })
	a.log.Info("agent started", "region", a.w.Path(), "centers", a.opts.Centers, "prefixes", a.f.prefixes)
	if why := a.w.Stat().HugeTLBFallback; why != "" {
		a.log.Warn("the region is not on hugetlbfs; it uses regular pages", "hugetlbfs_dir", a.opts.Shm.HugeTLBDir, "reason", why)
	}
	return nil
}

func (a *Agent) goFunc(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// Shutdown stops the agent and closes the region (which stays in place for
// readers and the next agent). Instances registered on behalf of local
// processes are not deregistered: they expire after their TTL unless the
// next agent registers them again. It waits for the agent's goroutines
// until ctx is done.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return nil
	}
	a.stopped = true
	client := a.client
	a.client = nil
	a.mu.Unlock()
	if a.cancel != nil {
		a.cancel()
	}
	if a.ctl != nil {
		a.ctl.Close()
	}
	if a.httpSrv != nil {
		a.httpSrv.Close()
	}
	if client != nil {
		client.Close()
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err() // the region stays open: goroutines may still use it
	}
	a.closeRegion()
	a.log.Info("agent stopped", "region", a.w.Path())
	return nil
}

// Run starts the agent and runs it until ctx is done, then shuts it down.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.Start(ctx); err != nil {
		a.Shutdown(context.Background())
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return a.Shutdown(sctx)
}

// Status reports the agent's state.
func (a *Agent) Status() Status {
	st := a.w.Stat()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.status
	s.Prefixes = append([]string(nil), s.Prefixes...)
	s.Entries, s.UsedBytes, s.FreeBytes = st.Entries, st.UsedBytes, st.FreeBytes
	s.Registered = len(a.regs)
	return s
}

// Metrics is the registry holding the agent's Prometheus metrics.
func (a *Agent) Metrics() prometheus.Gatherer { return a.metrics.reg }

// MetricsAddr is the address the metrics endpoint listens on (nil if none).
func (a *Agent) MetricsAddr() net.Addr {
	if a.httpLn == nil {
		return nil
	}
	return a.httpLn.Addr()
}

// updateStatus changes the status under the lock.
func (a *Agent) updateStatus(f func(s *Status)) {
	a.mu.Lock()
	f(&a.status)
	a.mu.Unlock()
}

// Subscribe adds prefixes to the agent's subscription. It returns once the
// region holds every entry under them (or ctx ends). Prefixes added this way
// are remembered beside the region and kept by the next agent on it.
func (a *Agent) Subscribe(ctx context.Context, prefixes []string) error {
	return a.ask(ctx, &request{op: OpSubscribe, prefixes: prefixes})
}

// Refresh fetches key from the center and rewrites that one entry in the
// region (or deletes it if the center no longer has it). It returns after
// the commit.
func (a *Agent) Refresh(ctx context.Context, key string) error {
	return a.ask(ctx, &request{op: OpRefresh, key: key})
}

// ask hands a request to the follower and waits for its answer.
func (a *Agent) ask(ctx context.Context, req *request) error {
	req.reply = make(chan error, 1)
	if a.ctx == nil {
		return ErrStopped
	}
	select {
	case a.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.ctx.Done():
		return ErrStopped
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-a.ctx.Done():
		return ErrStopped
	}
}

// Register registers an instance at the centers on behalf of a local
// process and heartbeats it until Deregister or the agent stops. ttl, if not
// zero, overrides the instance's TTL.
func (a *Agent) Register(ctx context.Context, in registry.Instance, ttl time.Duration) error {
	if ttl > 0 {
		in.TTL = ttl
	}
	c, err := a.sdk()
	if err != nil {
		return err
	}
	// The registration must outlive this request: the client deregisters
	// when the context given to Register ends. Client.Close (at Shutdown)
	// stops the heartbeats without deregistering (KeepOnClose).
	rctx := context.WithoutCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Register(rctx, in, registry.RegisterOptions{}) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.regs[in.Key()] = true
	a.mu.Unlock()
	return nil
}

// Deregister stops heartbeating an instance registered with Register and
// deletes it at the centers.
func (a *Agent) Deregister(ctx context.Context, service, id string) error {
	key := registry.InstanceKey(service, id)
	a.mu.Lock()
	known := a.regs[key]
	delete(a.regs, key)
	c := a.client
	a.mu.Unlock()
	if !known || c == nil {
		return fmt.Errorf("%w: %s was not registered through this agent", registry.ErrNotFound, key)
	}
	return c.Deregister(ctx, service, id)
}

// sdk returns the registration client, creating it on first use.
func (a *Agent) sdk() (*registry.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return nil, ErrStopped
	}
	if a.client == nil {
		c, err := registry.NewClient(registry.ClientOptions{
			Addrs: a.opts.Centers, Token: a.opts.Token, TLS: a.opts.TLS,
			Name: "shmreg-agent", Logger: a.log,
			// The next agent registers them again (see Shutdown).
			KeepOnClose: true,
		})
		if err != nil {
			return nil, err
		}
		a.client = c
	}
	return a.client, nil
}

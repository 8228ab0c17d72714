package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// PropagateConfig configures the propagate workload.
type PropagateConfig struct {
	Config
	// Agents is the number of region agents (K). Default 4.
	Agents int
	// Rate is registrations per second, spread evenly over both centers.
	// Default 500.
	Rate int
	// AgentCmd makes the command of one agent process given the flags of
	// `shmreg agent` (--centers, --region, --subscribe, --region-size,
	// --log-level): cmd/shmreg runs itself as `shmreg agent`, tests
	// re-execute the test binary. Each agent is then a process of its
	// own, as on its own host. Nil runs the agents in this process, where
	// they share its heap, and its garbage collector's pauses, with the
	// centers and the harness (see docs/BENCHMARKS.md).
	AgentCmd func(args []string) *exec.Cmd
	// CenterCmd makes the command of one center process given the flags
	// of `shmreg center` (--listen, --peer, --data, --self-preservation,
	// --log-level), as AgentCmd does for agents. Nil runs both centers in
	// memory in this process.
	CenterCmd func(args []string) *exec.Cmd
}

// agentSystem is the System of the propagate results: "agent" when the
// agents and the centers are processes of their own, "agent-inproc" when
// the agents run in this process, "agent-centers-inproc" when only the
// centers do.
func (c PropagateConfig) agentSystem() string {
	switch {
	case c.AgentCmd == nil:
		return agentName + "-inproc"
	case c.CenterCmd == nil:
		return agentName + "-centers-inproc"
	}
	return agentName
}

// agentWhere says where the agents and centers ran, for the results' notes.
func (c PropagateConfig) agentWhere() string {
	where := func(cmd func([]string) *exec.Cmd, what string) string {
		if cmd == nil {
			return what + " in the harness's process"
		}
		return "each " + what[:len(what)-1] + " its own process"
	}
	return where(c.AgentCmd, "agents") + ", " + where(c.CenterCmd, "centers")
}

// Propagate starts a mirrored pair of centers holding cfg.Entries
// instances and measures (1) the time for a fresh agent to fill a
// region from the 100K-entry (cfg.Entries) snapshot, and (2) with K
// agents following alternately one center or the other, the latency
// from a registration's acknowledgment at a center to its visibility in
// every agent's region, while registrations arrive at cfg.Rate.
//
// The agents are real agents (package agent), each with its own region:
// with cfg.AgentCmd each is a process of its own, otherwise they run in
// this process; the same for the centers with cfg.CenterCmd (see
// agentSystem for the results' labels). With both, the harness itself
// only registers and opens readers on the agents' regions.
func Propagate(ctx context.Context, cfg PropagateConfig) ([]Result, error) {
	cfg.Config = cfg.Config.withDefaults()
	if cfg.Agents <= 0 {
		cfg.Agents = 4
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 500
	}
	dir, err := cfg.workDir("propagate")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer cfg.progressDone()
	pair, err := startPair(ctx, cfg, dir)
	if err != nil {
		return nil, err
	}
	defer pair.stop()
	addrs := pair.addrs
	cfg.progress("propagate: registering %d instances...", cfg.Entries)
	if err := RegisterAll(ctx, addrs[0], 0, cfg.Entries, 16); err != nil {
		return nil, err
	}
	if err := pair.waitPeer(ctx); err != nil {
		return nil, err
	}

	var out []Result
	fill, err := measureFill(ctx, cfg, dir, addrs[0])
	if err != nil {
		return nil, err
	}
	out = append(out, fill)
	lat, err := measureVisibility(ctx, cfg, dir, addrs)
	if err != nil {
		return nil, err
	}
	if err := pair.died(); err != nil {
		return nil, fmt.Errorf("propagate: a center stopped during the run: %w", err)
	}
	out = append(out, lat)
	return stamp(out, ThisMachine()), nil
}

// measureFill times fresh agents filling a region from the snapshot,
// cfg.Run.Reps times; the median is reported.
func measureFill(ctx context.Context, cfg PropagateConfig, dir, addr string) (Result, error) {
	var times []int64
	for rep := range cfg.Run.Reps {
		cfg.progress("propagate: fresh region fill from %d entries, rep %d/%d...", cfg.Entries, rep+1, cfg.Run.Reps)
		name := fmt.Sprintf("fill-%d", rep)
		opts := shm.Options{Dir: dir} // the default size, as an agent would start
		t0 := time.Now()
		a, err := startAgent(ctx, cfg, []string{addr}, name, opts)
		if err != nil {
			return Result{}, err
		}
		actx, done := whileRunning(ctx, a)
		err = waitLen(actx, opts, name, cfg.Entries)
		el := time.Since(t0)
		done()
		if cerr := a.stop(); err == nil {
			err = cerr
		}
		if err != nil {
			return Result{}, err
		}
		times = append(times, int64(el))
		os.Remove(opts.Resolve(name))
		os.Remove(opts.Resolve(name) + ".ctl")
	}
	med := median(times)
	r := Result{
		System: cfg.agentSystem(), Workload: "fill", Clients: 1, Status: "ok", Reps: len(times), Entries: cfg.Entries,
		OpsPerSec: float64(cfg.Entries) / time.Duration(med).Seconds(),
		P50:       med, P99: slices.Max(times), P999: slices.Max(times), Max: slices.Max(times),
		Note: fmt.Sprintf("time from the agent's start (%s) to %d entries readable in its fresh region: median %v of %d (p50 = median, p99/max = worst); ops/s = entries per second",
			cfg.agentWhere(), cfg.Entries, time.Duration(med).Round(time.Millisecond), len(times)),
	}
	return r, nil
}

// waitLen waits until the region holds n entries, polling its change
// sequence.
func waitLen(ctx context.Context, opts shm.Options, name string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var r *shm.Reader
	for r == nil {
		var err error
		if r, err = shm.Open(name, opts); err != nil && !errors.Is(err, shm.ErrNoRegion) {
			return err
		}
		if r == nil && !sleepCtx(ctx, time.Millisecond) {
			return fmt.Errorf("fill: no region: %w", context.Cause(ctx))
		}
	}
	defer r.Close()
	for {
		seq := r.Seq()
		// Len does not follow the region to a newer file after the writer
		// grew it; a lookup does, so look something up first.
		r.View(nil, func([]byte) error { return nil })
		if r.Len() >= n {
			return nil
		}
		wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := r.Wait(wctx, seq)
		wcancel()
		if ctx.Err() != nil {
			if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) && !errors.Is(cause, context.Canceled) {
				return fmt.Errorf("fill: %d of %d entries: %w", r.Len(), n, cause)
			}
			return fmt.Errorf("fill: %d of %d entries after 2m", r.Len(), n)
		}
		_ = err // a timeout only means: look again
	}
}

// registration is one instance registered during the visibility run.
type registration struct {
	key []byte
	ack time.Time
}

// measureVisibility runs cfg.Agents agents (agent i follows center
// i%2), registers fresh instances alternately on each center at cfg.Rate
// for cfg.Run.Duration, and records, per registration, the time from its
// acknowledgment until the last agent's region shows it.
func measureVisibility(ctx context.Context, cfg PropagateConfig, dir string, addrs []string) (Result, error) {
	opts := shm.Options{Dir: dir, Size: regionSize(&Dataset{Keys: make([][]byte, cfg.Entries+cfg.Rate*60), Values: make([][]byte, cfg.Entries+cfg.Rate*60)}) + int64(cfg.Entries)*256}
	var agents []runningAgent
	defer func() {
		for _, a := range agents {
			a.stop()
		}
	}()
	for i := range cfg.Agents {
		name := fmt.Sprintf("agent-%d", i)
		cfg.progress("propagate: %d agents filling their regions (%d/%d)...", cfg.Agents, i+1, cfg.Agents)
		a, err := startAgent(ctx, cfg, []string{addrs[i%2], addrs[(i+1)%2]}, name, opts)
		if err != nil {
			return Result{}, err
		}
		agents = append(agents, a)
		actx, done := whileRunning(ctx, a)
		err = waitLen(actx, opts, name, cfg.Entries)
		done()
		if err != nil {
			return Result{}, err
		}
	}
	readers := make([]*shm.Reader, len(agents))
	for i := range agents {
		r, err := shm.Open(fmt.Sprintf("agent-%d", i), opts)
		if err != nil {
			return Result{}, err
		}
		defer r.Close()
		readers[i] = r
	}

	cfg.progress("propagate: %d registrations/s over 2 centers for %v to %d agents...", cfg.Rate, cfg.Run.Duration, cfg.Agents)
	v := &visibility{readers: readers, seen: make([][]time.Time, len(readers))}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() { defer wg.Done(); v.watch(wctx, i) }()
	}
	regErr := registerAtRate(ctx, cfg, addrs, v)
	// Give the last registrations time to arrive, then stop watching.
	deadline := time.Now().Add(10 * time.Second)
	for !v.complete() && time.Now().Before(deadline) && sleepCtx(ctx, 10*time.Millisecond) {
	}
	stopWatch()
	wg.Wait()
	if regErr != nil {
		return Result{}, regErr
	}
	for i, a := range agents {
		select {
		case <-a.exited():
			return Result{}, fmt.Errorf("agent %d stopped during the run: %w", i, a.err())
		default:
		}
	}
	h, missing, early := v.latencies()
	nregs := len(v.regs)
	r := Result{
		System: cfg.agentSystem(), Workload: "propagate", Clients: cfg.Agents, Status: "ok", Reps: 1, Entries: cfg.Entries,
		OpsPerSec: float64(nregs) / cfg.Run.Duration.Seconds(),
		P50:       h.Quantile(0.5), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.Max, Samples: h.N,
		Note: fmt.Sprintf("ack at a center → visible in all %d agents' regions (%s; half follow the other center); %d registrations, %d never seen everywhere within 10s, %d seen before their ack (counted as 0); clients = agents",
			cfg.Agents, cfg.agentWhere(), nregs, missing, early),
	}
	if missing > 0 {
		r.Status = fmt.Sprintf("%d of %d registrations never reached every region", missing, nregs)
	}
	return r, nil
}

// registerAtRate registers fresh instances (numbered from cfg.Entries),
// alternating between the centers, one every 1/Rate, for the run's
// duration. The schedule is fixed: a slow acknowledgment delays the next
// registration but the ones after it catch up.
func registerAtRate(ctx context.Context, cfg PropagateConfig, addrs []string, v *visibility) error {
	conns := make([]*registry.Conn, len(addrs))
	for i, a := range addrs {
		c, err := registry.Dial(ctx, a, registry.DialOptions{Role: registry.RoleInstance, Name: "bench-propagate"})
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	interval := time.Second / time.Duration(cfg.Rate)
	start := time.Now()
	for j := 0; ; j++ {
		at := start.Add(time.Duration(j) * interval)
		if at.Sub(start) >= cfg.Run.Duration {
			return nil
		}
		if !sleepCtx(ctx, time.Until(at)) {
			return ctx.Err()
		}
		in := Instance(cfg.Entries + j)
		if _, err := conns[j%len(conns)].Register(ctx, in, registry.RegisterOptions{}); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		v.acked([]byte(in.Key()), time.Now())
	}
}

// visibility records, for every registration, when each agent's
// region first showed it.
type visibility struct {
	readers []*shm.Reader
	mu      sync.Mutex
	regs    []registration
	seen    [][]time.Time // seen[agent][reg]; zero: not yet
	first   []int         // per agent: every registration before it is seen
}

// acked adds a registration just acknowledged. A region that already shows
// it (the push beat the acknowledgment) is marked as seeing it at ack.
func (v *visibility) acked(key []byte, at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.regs = append(v.regs, registration{key: key, ack: at})
	for i, r := range v.readers {
		var t time.Time
		if r.View(key, func([]byte) error { return nil }) == nil {
			t = at
		}
		v.seen[i] = append(v.seen[i], t)
	}
}

// watch records when registrations become visible in agent i's region: it
// waits on the region's change sequence and, after each change, looks up
// the registrations that region has not shown yet.
func (v *visibility) watch(ctx context.Context, i int) {
	r := v.readers[i]
	first := 0
	for ctx.Err() == nil {
		seq := r.Seq()
		now := time.Now()
		v.mu.Lock()
		seen := v.seen[i]
		for j := first; j < len(seen); j++ {
			if seen[j].IsZero() && r.View(v.regs[j].key, func([]byte) error { return nil }) == nil {
				seen[j] = now
			}
		}
		for first < len(seen) && !seen[first].IsZero() {
			first++
		}
		v.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		r.Wait(wctx, seq)
		cancel()
	}
}

// complete reports whether every region shows every registration.
func (v *visibility) complete() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, seen := range v.seen {
		for _, t := range seen {
			if t.IsZero() {
				return false
			}
		}
	}
	return true
}

// latencies is, per registration, the time from its ack until the last
// region showed it; missing counts registrations some region never showed,
// early those every region showed by the ack (recorded as 0).
func (v *visibility) latencies() (h Histogram, missing, early int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for j, reg := range v.regs {
		var last time.Time
		for i := range v.seen {
			t := v.seen[i][j]
			if t.IsZero() {
				last = time.Time{}
				break
			}
			if t.After(last) {
				last = t
			}
		}
		if last.IsZero() {
			missing++
			continue
		}
		d := last.Sub(reg.ack)
		if d <= 0 {
			early++
			d = 0
		}
		h.Record(d)
	}
	return h, missing, early
}

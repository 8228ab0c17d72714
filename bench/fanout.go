package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// FanoutConfig configures the fanout workload: one center process, S
// simulated agents, E entries, W acknowledged writes per second.
type FanoutConfig struct {
	// Config's Entries is E (default 100,000), Run.Duration the length of
	// each steady phase (default 2s); Dir, Progress as everywhere.
	Config
	// Agents are the numbers of simulated agents (S) to measure, each with
	// a center of its own started from the same store. Default [100].
	Agents []int
	// Rates are the acknowledged writes per second (W) of the steady
	// phases run, in order, after each fill storm. Default [100].
	Rates []int
	// Wide is the share of agents that subscribe to every instance
	// (svc/); the others subscribe to Narrow services each
	// (svc/<service>/). Default 0.5; negative: none.
	Wide float64
	// Services is the number of services the entries belong to (entry i
	// to service i mod Services). Default 20.
	Services int
	// Narrow is the number of services a narrow agent follows. Default 2.
	Narrow int
	// Writers are the connections the steady writes are spread over.
	// Default 16.
	Writers int
	// InFlight bounds the writes sent and not yet acknowledged. Writes go
	// out on schedule (write n at n/W seconds) whatever the acks do, as
	// from a fleet of independent instances, until InFlight are waiting:
	// then the next waits for a slot (counted as late). Default 1024.
	InFlight int
	// FillTimeout bounds a fill storm. Default 15m.
	FillTimeout time.Duration
	// Settle is how long the center is left alone after its start and
	// after the fill storm before its memory is read, and the window its
	// idle CPU is measured over. Default 2s.
	Settle time.Duration
	// MaxCenterRSS stops a fill storm (its S is reported as failed, the
	// next S runs) once the center's resident memory exceeds it, so that a
	// run too large for the machine does not wake the OOM killer on a
	// machine shared with others. Default 60% of MemAvailable at start.
	MaxCenterRSS int64
	// CenterWriteTimeout, if set, is the center's --write-timeout: how long
	// a simulated agent may take nothing before the center closes it. The
	// center's default (10s) is meant for clients on hosts of their own;
	// agents sharing two cores with the center can starve past it.
	CenterWriteTimeout time.Duration
	// OnRow, if set, receives each row as soon as it is measured (a long
	// run's rows are then not lost to an interruption).
	OnRow func(FanoutResult)
	// CenterCmd makes the command of the center process from the flags of
	// `shmreg center` (--listen, --data, --metrics, --self-preservation,
	// --log-level, --insecure, --max-conns, --max-conns-per-addr):
	// cmd/shmreg runs itself, tests re-execute the test binary. Required:
	// the workload measures the center's process.
	CenterCmd func(args []string) *exec.Cmd
}

func (c FanoutConfig) withDefaults() FanoutConfig {
	c.Config = c.Config.withDefaults()
	if len(c.Agents) == 0 {
		c.Agents = []int{100}
	}
	if len(c.Rates) == 0 {
		c.Rates = []int{100}
	}
	if c.Wide == 0 {
		c.Wide = 0.5
	} else if c.Wide < 0 {
		c.Wide = 0
	}
	c.Wide = min(c.Wide, 1)
	if c.Services <= 0 {
		c.Services = 20
	}
	c.Services = min(c.Services, c.Entries)
	if c.Narrow <= 0 {
		c.Narrow = 2
	}
	c.Narrow = min(c.Narrow, c.Services)
	if c.Writers <= 0 {
		c.Writers = 16
	}
	if c.InFlight <= 0 {
		c.InFlight = 1024
	}
	if c.FillTimeout <= 0 {
		c.FillTimeout = 15 * time.Minute
	}
	if c.Settle <= 0 {
		c.Settle = 2 * time.Second
	}
	if c.MaxCenterRSS <= 0 {
		c.MaxCenterRSS = memAvailable() / 10 * 6
	}
	return c
}

// FanoutResult is one row of the fanout workload: one S and one W. Its
// Result carries what every workload reports (Clients is S, OpsPerSec the
// writes per second sustained, the latencies those of delivery: from the
// writer's ack to a record's arrival at an agent, over every agent and
// write it should reach), so that `bench plot` and tools reading Result
// records read it too; Fanout the rest.
type FanoutResult struct {
	Result
	Fanout FanoutFigures `json:"fanout"`
}

// FanoutFigures are the fanout workload's own figures. Sizes are bytes,
// durations nanoseconds, CPU shares in cores (CPU-seconds per second).
type FanoutFigures struct {
	Agents      int    `json:"agents"`
	WideAgents  int    `json:"wide_agents"` // subscribed to svc/
	Services    int    `json:"services"`
	Narrow      int    `json:"narrow_services_per_agent"`
	Rate        int    `json:"rate"` // writes per second asked
	DurationNs  int64  `json:"duration_ns"`
	LoadAverage string `json:"load_average"` // /proc/loadavg at the row's start

	CenterStartNs int64 `json:"center_start_ns"` // process start to serving (loading E)
	DialNs        int64 `json:"dial_ns"`         // S connections and handshakes, 64 at a time
	// Fill storm: every agent subscribes at once; the time until the last
	// (and the median) agent has its whole initial snapshot.
	FillNs          int64   `json:"fill_ns"`
	FillP50Ns       int64   `json:"fill_p50_ns"`
	FillRecords     int64   `json:"fill_records"`
	FillCenterCPU   float64 `json:"fill_center_cpu"`
	FillHarnessCPU  float64 `json:"fill_harness_cpu"`
	FillCPUPerRecNs float64 `json:"fill_center_cpu_per_record_ns"`

	// Memory of the center: with E loaded and no agent (base), with S
	// connected agents not yet subscribed, and idle after the fill
	// (after Settle); peak is VmHWM after the fill. Heap is the Go heap in
	// use (go_memstats_heap_inuse_bytes).
	RSSBase          int64 `json:"rss_base"`
	RSSConnected     int64 `json:"rss_connected"`
	RSSIdle          int64 `json:"rss_idle"`
	RSSPeak          int64 `json:"rss_peak"`
	RSSPerAgent      int64 `json:"rss_per_idle_agent"` // (idle - base) / S
	RSSPerConnection int64 `json:"rss_per_connection"` // (connected - base) / S
	// What the center allocated per connection before any subscription:
	// Go heap and goroutine stacks in use, (connected - base) / S. Unlike
	// RSS (a fresh buffer's untouched pages are not resident) and unlike
	// the idle figures (the storm's garbage may or may not have been
	// collected when they are read), nothing is freed in between.
	HeapPerConnection  int64 `json:"heap_per_connection"`
	StackPerConnection int64 `json:"stack_per_connection"`
	// ConnectGCs counts the garbage collections while the agents connected:
	// one frees what the start left (loading E) and spoils the heap
	// figure, which is then 0.
	ConnectGCs        int64   `json:"connect_gcs"`
	HeapPerAgent      int64   `json:"heap_per_idle_agent"`  // heap in use, (idle - base) / S
	GoroutinesPerConn int64   `json:"goroutines_per_agent"` // (idle - base) / S
	IdleCenterCPU     float64 `json:"idle_center_cpu"`      // over Settle
	IdleHarnessCPU    float64 `json:"idle_harness_cpu"`     // the same window

	// Steady phase: W writes per second for the duration, then until
	// every delivery arrived (or 30s, at least twice the duration, passed: what has not arrived then is missing).
	Writes       int     `json:"writes"` // acknowledged
	WritesPerSec float64 `json:"writes_per_sec"`
	AckP50Ns     int64   `json:"ack_p50_ns"` // the writer's wait for its ack
	AckP99Ns     int64   `json:"ack_p99_ns"`
	// Delivery latency from the write's send instead of its ack: the
	// same arrivals, measured from the moment the writer sent the write.
	SendP50Ns     int64   `json:"send_p50_ns"`
	SendP99Ns     int64   `json:"send_p99_ns"`
	SendMaxNs     int64   `json:"send_max_ns"`
	LateWrites    int     `json:"late_writes"` // sent over 10ms after due: InFlight writes were waiting
	Deliveries    uint64  `json:"deliveries"`  // (agent, write) pairs expected
	Delivered     uint64  `json:"delivered"`
	Missing       uint64  `json:"missing"`
	Early         uint64  `json:"early"` // arrived before the writer had the ack (latency 0)
	Stray         uint64  `json:"stray"` // records of no write of this phase
	Resnapshots   int     `json:"resnapshots"`
	FailedAgents  int     `json:"failed_agents"`
	WindowNs      int64   `json:"window_ns"`   // first write to last delivery (or drain timeout)
	CenterCPU     float64 `json:"center_cpu"`  // over the window
	HarnessCPU    float64 `json:"harness_cpu"` // over the window
	Pushes        uint64  `json:"pushes"`      // push frames (shmreg_center_pushes_total)
	PushedRecords uint64  `json:"pushed_records"`
	// Center CPU over the window per delivered record and per push frame
	// (all of it: writes, fsyncs and liveness are included).
	CPUPerRecordNs float64 `json:"center_cpu_per_record_ns"`
	CPUPerFrameNs  float64 `json:"center_cpu_per_frame_ns"`
	FirstError     string  `json:"first_error,omitempty"`
	heapBase       float64 // heap in use before the agents connected
	// The center at the end of the window: the garbage of the fill storm
	// has been collected by then (an idle Go process does not collect),
	// so heap per agent here is closer to what an agent holds.
	RSSEnd          int64 `json:"rss_end"`
	HeapEndPerAgent int64 `json:"heap_per_agent_end"` // (heap in use at the end - base) / S
	GCs             int64 `json:"center_gcs"`         // garbage collections in the window
}

// Fanout measures one center pushing to thousands of agents (issue 17):
// it preloads cfg.Entries instances into a center's store, then for each
// S in cfg.Agents starts a center from that store, connects S simulated
// agents (fanoutAgent: real protocol clients in this process), releases
// their subscriptions at once (the fill storm), lets them idle, and runs a
// steady phase at each rate of cfg.Rates.
func Fanout(ctx context.Context, cfg FanoutConfig) ([]FanoutResult, error) {
	cfg = cfg.withDefaults()
	if cfg.CenterCmd == nil {
		return nil, errors.New("bench: fanout needs a center command (it measures the center's process)")
	}
	limit, err := raiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("bench: raise the open-file limit: %w", err)
	}
	if need := uint64(slices.Max(cfg.Agents) + cfg.Writers + 256); need > limit {
		return nil, fmt.Errorf("bench: %d agents need about %d open files in this process and in the center; the hard limit (ulimit -Hn) is %d",
			slices.Max(cfg.Agents), need, limit)
	}
	dir, err := cfg.workDir("fanout")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer cfg.progressDone()
	data := filepath.Join(dir, "center")
	if err := fanoutPreload(ctx, cfg, data); err != nil {
		return nil, err
	}
	var out []FanoutResult
	m := ThisMachine()
	for _, s := range cfg.Agents {
		rs, err := fanoutAgents(ctx, cfg, data, s)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if err != nil {
			// Reported, loudly, in place of the row; the next S may fit.
			rs = []FanoutResult{{
				Result: Result{System: "center", Workload: "fanout", Clients: s, Entries: cfg.Entries, Status: "failed: " + err.Error()},
				Fanout: FanoutFigures{Agents: s, LoadAverage: loadAverage()},
			}}
		}
		for i := range rs {
			rs[i].Machine = m
			if cfg.OnRow != nil {
				cfg.OnRow(rs[i])
			}
		}
		out = append(out, rs...)
	}
	return out, nil
}

// fanoutInstance is entry i of the fanout workload, marked as write seq
// of phase (phase 0: the preload): service service-%03d (i mod
// services), a value of about 480 bytes.
func fanoutInstance(i, services, phase, seq int) registry.Instance {
	return registry.Instance{
		Service: fmt.Sprintf("service-%03d", i%services),
		ID:      fmt.Sprintf("instance-%07d", i),
		Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
		Port:    8000 + i%1000,
		Weight:  1 + i%10,
		Metadata: map[string]string{
			"zone":    fmt.Sprintf("zone-%d", i%3),
			"version": "v1.42.7",
			"owner":   "team-platform",
			"pad":     strings.Repeat("x", 320),
			"bseq":    formatMarker(phase, seq),
		},
		Health: registry.HealthPassing,
		TTL:    registry.MaxTTL, // nothing expires during a run
	}
}

// fanoutPreload registers the entries on a center over 16 connections and
// stops it, leaving the store in data.
func fanoutPreload(ctx context.Context, cfg FanoutConfig, data string) error {
	c, err := startFanoutCenter(ctx, cfg.CenterCmd, data, 1024, cfg.CenterWriteTimeout)
	if err != nil {
		return err
	}
	defer c.stop()
	const conns = 16
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := registry.Dial(ctx, c.addr, registry.DialOptions{Role: registry.RoleInstance, Name: "bench-fanout-load"})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer conn.Close()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Entries {
					return
				}
				if i%5000 == 0 {
					cfg.progress("fanout: loading %d entries (%d, %v)...", cfg.Entries, i, time.Since(start).Round(time.Second))
				}
				if _, err := conn.Register(ctx, fanoutInstance(i, cfg.Services, 0, 0), registry.RegisterOptions{}); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("register %d: %w", i, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.stop()
}

// fanoutPlan gives each of s agents its prefixes and initial snapshot
// size: agent i is wide when the running share of wide agents falls below
// cfg.Wide; narrow agents take Narrow services each, round robin.
func fanoutPlan(cfg FanoutConfig, s int) []*fanoutAgent {
	perService := make([]int, cfg.Services)
	for i := range cfg.Entries {
		perService[i%cfg.Services]++
	}
	agents := make([]*fanoutAgent, s)
	narrow := 0
	for i := range agents {
		a := &fanoutAgent{}
		if math.Floor(float64(i+1)*cfg.Wide) > math.Floor(float64(i)*cfg.Wide) {
			a.prefixes, a.want = []string{registry.InstancePrefix}, cfg.Entries
		} else {
			for k := range cfg.Narrow {
				svc := (narrow*cfg.Narrow + k) % cfg.Services
				a.services = append(a.services, svc)
				a.prefixes = append(a.prefixes, fmt.Sprintf("%sservice-%03d/", registry.InstancePrefix, svc))
				a.want += perService[svc]
			}
			narrow++
		}
		agents[i] = a
	}
	return agents
}

// fanoutAgents runs one S: a fresh center from the store, the fill storm,
// the idle measurement, then one steady phase per rate.
func fanoutAgents(ctx context.Context, cfg FanoutConfig, data string, s int) ([]FanoutResult, error) {
	base := FanoutFigures{Agents: s, Services: cfg.Services, Narrow: cfg.Narrow, LoadAverage: loadAverage(), DurationNs: int64(cfg.Run.Duration)}
	cfg.progress("fanout: %d agents: starting the center (%d entries)...", s, cfg.Entries)
	t := time.Now()
	c, err := startFanoutCenter(ctx, cfg.CenterCmd, data, s+1024, cfg.CenterWriteTimeout)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	base.CenterStartNs = int64(time.Since(t))
	if !sleepCtx(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}
	m0, err := c.scrape(ctx)
	if err != nil {
		return nil, err
	}
	if base.RSSBase, _, err = c.memory(); err != nil {
		return nil, err
	}

	agents := fanoutPlan(cfg, s)
	for _, a := range agents {
		if a.services == nil {
			base.WideAgents++
		}
		base.FillRecords += int64(a.want)
	}
	cfg.progress("fanout: %d agents: connecting...", s)
	t = time.Now()
	f, err := dialFleet(ctx, c.addr, agents, 64)
	if err != nil {
		return nil, err
	}
	defer f.close()
	base.DialNs = int64(time.Since(t))
	if base.RSSConnected, _, err = c.memory(); err != nil {
		return nil, err
	}
	mc, err := c.scrape(ctx)
	if err != nil {
		return nil, err
	}

	// The fill storm.
	cfg.progress("fanout: %d agents: fill storm (%d snapshot records)...", s, base.FillRecords)
	s0, err := c.sample(ctx)
	if err != nil {
		return nil, err
	}
	f.subscribe()
	deadline := time.Now().Add(cfg.FillTimeout)
	for f.filled.Load()+f.failed.Load() < int64(s) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("fill storm: %d of %d agents have their snapshot after %v", f.filled.Load(), s, cfg.FillTimeout)
		}
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return nil, ctx.Err()
		}
		if err := c.died(); err != nil {
			return nil, err
		}
		if rss, _, err := c.memory(); err == nil && rss > cfg.MaxCenterRSS {
			return nil, fmt.Errorf("fill storm stopped: the center's RSS reached %s (limit %s), with %d of %d agents filled after %v",
				formatBytes(rss), formatBytes(cfg.MaxCenterRSS), f.filled.Load(), s, time.Duration(f.now()-f.t0.Load()).Round(time.Second))
		}
	}
	s1, err := c.sample(ctx)
	if err != nil {
		return nil, err
	}
	if n := f.failed.Load(); n > 0 {
		return nil, fmt.Errorf("fill storm: %d agents failed, the first: %v", n, firstAgentError(agents))
	}
	t0 := f.t0.Load()
	fills := make([]int64, 0, s)
	for _, a := range agents {
		fills = append(fills, a.filled.Load()-t0)
	}
	base.FillNs, base.FillP50Ns = slices.Max(fills), median(fills)
	fillWin := time.Duration(base.FillNs)
	base.FillCenterCPU = (s1.cpu - s0.cpu).Seconds() / fillWin.Seconds()
	base.FillHarnessCPU = (s1.self - s0.self).Seconds() / s1.at.Sub(s0.at).Seconds()
	base.FillCPUPerRecNs = float64(s1.cpu-s0.cpu) / float64(base.FillRecords)

	// Idle: let the storm's garbage settle, then measure.
	cfg.progress("fanout: %d agents: idle...", s)
	if !sleepCtx(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}
	s2, err := c.sample(ctx)
	if err != nil {
		return nil, err
	}
	if !sleepCtx(ctx, cfg.Settle) {
		return nil, ctx.Err()
	}
	s3, err := c.sample(ctx)
	if err != nil {
		return nil, err
	}
	base.IdleCenterCPU = (s3.cpu - s2.cpu).Seconds() / s3.at.Sub(s2.at).Seconds()
	base.IdleHarnessCPU = (s3.self - s2.self).Seconds() / s3.at.Sub(s2.at).Seconds()
	if base.RSSIdle, base.RSSPeak, err = c.memory(); err != nil {
		return nil, err
	}
	base.RSSPerAgent = (base.RSSIdle - base.RSSBase) / int64(s)
	base.RSSPerConnection = (base.RSSConnected - base.RSSBase) / int64(s)
	base.heapBase = m0["go_memstats_heap_inuse_bytes"]
	base.ConnectGCs = int64(mc["go_gc_duration_seconds_count"] - m0["go_gc_duration_seconds_count"])
	if base.ConnectGCs == 0 {
		base.HeapPerConnection = int64(mc["go_memstats_heap_inuse_bytes"]-base.heapBase) / int64(s)
	}
	base.StackPerConnection = int64(mc["go_memstats_stack_inuse_bytes"]-m0["go_memstats_stack_inuse_bytes"]) / int64(s)
	base.HeapPerAgent = int64(s3.metrics["go_memstats_heap_inuse_bytes"]-base.heapBase) / int64(s)
	base.GoroutinesPerConn = int64(math.Round((s3.metrics["go_goroutines"] - m0["go_goroutines"]) / float64(s)))

	var out []FanoutResult
	for i, w := range cfg.Rates {
		cfg.progress("fanout: %d agents: %d writes/s for %v...", s, w, cfg.Run.Duration)
		fig := base
		fig.Rate = w
		fig.LoadAverage = loadAverage()
		r, err := fanoutSteady(ctx, cfg, c, f, i+1, w, fig)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := c.died(); err != nil {
		return nil, fmt.Errorf("the center stopped during the run: %w", err)
	}
	return out, nil
}

// fanoutSteady runs one steady phase: updates of the entries in turn,
// write n sent at n/w seconds (over cfg.Writers connections, at most
// cfg.InFlight unacknowledged), for the run's duration; then it waits for
// every delivery.
func fanoutSteady(ctx context.Context, cfg FanoutConfig, c *fanoutCenter, f *fanoutFleet, id, w int, fig FanoutFigures) (FanoutResult, error) {
	total := int(float64(w) * cfg.Run.Duration.Seconds())
	total = max(1, min(total, fanoutSeqSpan-1))
	p := &steadyPhase{id: id % 100, acks: make([]atomic.Int64, total), sent: make([]atomic.Int64, total)}
	if p.id == 0 {
		p.id = 1
	}
	conns := make([]*registry.Conn, cfg.Writers)
	for i := range conns {
		conn, err := registry.Dial(ctx, c.addr, registry.DialOptions{Role: registry.RoleInstance, Name: "bench-fanout-writer"})
		if err != nil {
			return FanoutResult{}, err
		}
		defer conn.Close()
		conns[i] = conn
	}
	f.startPhase(p)
	s0, err := c.sample(ctx)
	if err != nil {
		return FanoutResult{}, err
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex // guards writeErr, ackHist
		writeErr error
		ackHist  Histogram
		slots    = make(chan struct{}, cfg.InFlight)
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	interval := time.Second / time.Duration(w)
	start := time.Now()
	startNs := f.now()
	for n := range total {
		due := start.Add(time.Duration(n) * interval)
		if !sleepCtx(wctx, time.Until(due)) {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-wctx.Done():
		}
		if wctx.Err() != nil {
			break
		}
		if time.Since(due) > 10*time.Millisecond {
			fig.LateWrites++
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			in := fanoutInstance(n%cfg.Entries, cfg.Services, p.id, n)
			sent := f.now()
			p.sent[n].Store(sent)
			_, err := conns[n%len(conns)].Register(wctx, in, registry.RegisterOptions{})
			ack := f.now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if writeErr == nil {
					writeErr = fmt.Errorf("write %d: %w", n, err)
				}
				cancel()
				return
			}
			p.acks[n].Store(ack)
			ackHist.Record(time.Duration(ack - sent))
		}()
	}
	wg.Wait()
	if writeErr != nil {
		return FanoutResult{}, writeErr
	}
	if ctx.Err() != nil {
		return FanoutResult{}, ctx.Err()
	}
	var lastAck int64
	for i := range p.acks {
		lastAck = max(lastAck, p.acks[i].Load())
	}
	fig.Writes = total
	fig.WritesPerSec = float64(total) / time.Duration(lastAck-startNs).Seconds()
	fig.AckP50Ns, fig.AckP99Ns = ackHist.Quantile(0.5), ackHist.Quantile(0.99)

	// What each agent should get: every write to one of its services.
	perService := make([]uint64, cfg.Services)
	for n := range total {
		perService[(n%cfg.Entries)%cfg.Services]++
	}
	want := make([]uint64, len(f.agents))
	for i, a := range f.agents {
		if a.services == nil {
			want[i] = uint64(total)
		}
		for _, svc := range a.services {
			want[i] += perService[svc]
		}
		fig.Deliveries += want[i]
	}
	drain := max(30*time.Second, 2*cfg.Run.Duration)
	until := time.Now().Add(drain)
	for p.delivered.Load() < fig.Deliveries && time.Now().Before(until) && f.failed.Load() < int64(len(f.agents)) {
		if !sleepCtx(ctx, 5*time.Millisecond) {
			return FanoutResult{}, ctx.Err()
		}
	}
	end := f.now()
	s1, err := c.sample(ctx)
	if err != nil {
		return FanoutResult{}, err
	}
	f.phase.Store(nil)

	var h, hs Histogram
	for i, a := range f.agents {
		a.mu.Lock()
		st := a.st
		a.mu.Unlock()
		h.Merge(&st.hist)
		hs.Merge(&st.sent)
		fig.Delivered += st.recs
		if st.recs < want[i] {
			fig.Missing += want[i] - st.recs
		}
		fig.Early += st.early
		fig.Stray += st.stray
		fig.Resnapshots += st.snaps
	}
	fig.SendP50Ns, fig.SendP99Ns, fig.SendMaxNs = hs.Quantile(0.5), hs.Quantile(0.99), hs.Max
	fig.FailedAgents = int(f.failed.Load())
	if fig.FailedAgents > 0 {
		fig.FirstError = firstAgentError(f.agents).Error()
	}
	window := time.Duration(end - startNs)
	fig.WindowNs = int64(window)
	fig.CenterCPU = (s1.cpu - s0.cpu).Seconds() / window.Seconds()
	fig.HarnessCPU = (s1.self - s0.self).Seconds() / s1.at.Sub(s0.at).Seconds()
	fig.Pushes = uint64(s1.metrics["shmreg_center_pushes_total"] - s0.metrics["shmreg_center_pushes_total"])
	fig.PushedRecords = uint64(s1.metrics["shmreg_center_pushed_records_total"] - s0.metrics["shmreg_center_pushed_records_total"])
	if fig.Delivered > 0 {
		fig.CPUPerRecordNs = float64(s1.cpu-s0.cpu) / float64(fig.Delivered)
	}
	if fig.Pushes > 0 {
		fig.CPUPerFrameNs = float64(s1.cpu-s0.cpu) / float64(fig.Pushes)
	}

	if fig.RSSEnd, _, err = c.memory(); err != nil {
		return FanoutResult{}, err
	}
	fig.HeapEndPerAgent = int64(s1.metrics["go_memstats_heap_inuse_bytes"]-fig.heapBase) / int64(len(f.agents))
	fig.GCs = int64(s1.metrics["go_gc_duration_seconds_count"] - s0.metrics["go_gc_duration_seconds_count"])

	r := FanoutResult{Result: Result{
		System: "center", Workload: "fanout", Clients: len(f.agents), Status: "ok", Entries: cfg.Entries,
		OpsPerSec: fig.WritesPerSec,
		P50:       h.Quantile(0.5), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Max: h.Max, Samples: h.N,
	}, Fanout: fig}
	r.Note = fanoutNote(fig)
	switch {
	case fig.FailedAgents > 0:
		r.Status = fmt.Sprintf("%d agents failed: %s", fig.FailedAgents, fig.FirstError)
	case fig.Missing > 0:
		r.Status = fmt.Sprintf("MISSING %d of %d deliveries", fig.Missing, fig.Deliveries)
	}
	return r, nil
}

// firstAgentError is the error of the first agent that failed.
func firstAgentError(agents []*fanoutAgent) error {
	for i, a := range agents {
		a.mu.Lock()
		err := a.err
		a.mu.Unlock()
		if err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
	}
	return errors.New("no agent error recorded")
}

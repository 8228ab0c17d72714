package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmreg/shmreg/bench"
)

// benchUsage lists bench's sub-subcommands; read-worker is hidden (the
// reader processes of "bench read" run it).
const benchUsage = `usage: shmreg bench <workload> [flags]

workloads:
  read       zero-copy lookups from a region: goroutines and reader processes, beside a Go map
  compare    the same lookups against map, shm, bbolt, center, redis and etcd
  write      upserts and deletes into a region; heartbeats absorbed by a center
  propagate  latency from a center's ack to visibility in every agent's region; fill time
  fanout     one center pushing to S simulated agents: fill storm, delivery latency, center CPU and RSS
  plot       draw the chart of records saved with --json (--json in.json --plot out.png)

Run 'shmreg bench <workload> --help' for its flags.`

func runBench(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(os.Stderr, benchUsage)
		if len(args) == 0 {
			return usageErrorf("missing workload")
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "read":
		return benchRead(ctx, args[1:])
	case "compare":
		return benchCompare(ctx, args[1:])
	case "write":
		return benchWrite(ctx, args[1:])
	case "propagate":
		return benchPropagate(ctx, args[1:])
	case "fanout":
		return benchFanout(ctx, args[1:])
	case "plot":
		return benchPlot(args[1:])
	case "read-worker":
		return bench.ReadWorker(ctx, args[1:], os.Stdin, os.Stdout)
	}
	fmt.Fprintln(os.Stderr, benchUsage)
	return usageErrorf("unknown workload %q", args[0])
}

// benchFlags are the flags every workload shares.
type benchFlags struct {
	fs       *flag.FlagSet
	cfg      bench.Config
	json     string
	plot     string
	quiet    bool
	reps     int
	duration time.Duration
	warmup   time.Duration
}

// newBenchFlags returns the flags every workload shares. clients is the
// help of --clients, whose default is defClients; a workload that has no
// many-client rows passes "" and gets no --clients.
func newBenchFlags(name, about string, defClients int, clients string) *benchFlags {
	f := &benchFlags{fs: flag.NewFlagSet("bench "+name, flag.ContinueOnError)}
	fs := f.fs
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shmreg bench %s [flags]\n\n%s\n\nflags:\n", name, about)
		fs.PrintDefaults()
	}
	fs.IntVar(&f.cfg.Entries, "entries", 100_000, "entries in the dataset")
	fs.DurationVar(&f.duration, "duration", 2*time.Second, "measured time of each repetition")
	fs.DurationVar(&f.warmup, "warmup", 500*time.Millisecond, "warm-up before each repetition (not measured)")
	fs.IntVar(&f.reps, "reps", 3, "repetitions; the median is reported")
	if clients != "" {
		fs.IntVar(&f.cfg.Clients, "clients", defClients, clients)
	}
	fs.Uint64Var(&f.cfg.Seed, "seed", 1, "seed of the shared random lookup order")
	fs.StringVar(&f.cfg.Dir, "dir", "", "directory for regions and peers' data (default $SHMREG_BENCH_DIR, /dev/shm, or the temp dir)")
	fs.StringVar(&f.json, "json", "", "also write the results to this file as JSON")
	fs.StringVar(&f.plot, "plot", "", "also write a chart of ops/s and p99 by system to this file: PNG or SVG by its extension (.png, .svg)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress line on stderr")
	return f
}

func (f *benchFlags) parse(args []string) error {
	if help, err := parse(f.fs, args); help || err != nil {
		return err
	}
	// Refuse a chart format before a run of minutes, not after.
	if ext := strings.ToLower(filepath.Ext(f.plot)); f.plot != "" && ext != ".png" && ext != ".svg" {
		return usageErrorf("--plot %s: the file name must end in .png or .svg", f.plot)
	}
	f.cfg.Run = bench.Run{Duration: f.duration, Warmup: f.warmup, Reps: f.reps}
	if f.warmup == 0 {
		f.cfg.Run.Warmup = -1 // explicitly none
	}
	if !f.quiet {
		f.cfg.Progress = os.Stderr
	}
	return nil
}

// helped reports whether --help was asked for (parse returned nil without
// parsing the rest).
func (f *benchFlags) helped(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

// report prints the table and writes the requested files.
func (f *benchFlags) report(rs []bench.Result, ref, title string) error {
	m := bench.ThisMachine()
	fmt.Printf("%s — %s, %d cores, GOMAXPROCS %d, %s\n\n", title, m.CPUModel, m.Cores, m.GOMAXPROCS, m.GoVersion)
	if err := bench.WriteTable(os.Stdout, rs, ref); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Note != "" && r.OK() {
			fmt.Printf("  %s %s %d: %s\n", r.System, r.Workload, r.Clients, r.Note)
		}
	}
	if f.json != "" {
		if err := bench.WriteJSON(f.json, rs); err != nil {
			return err
		}
	}
	if f.plot != "" {
		if err := bench.WritePlotFile(f.plot, title, rs); err != nil {
			return err
		}
	}
	return nil
}

func benchRead(ctx context.Context, args []string) error {
	f := newBenchFlags("read", "Zero-copy View lookups from a region, with 1..G goroutines and 1..P reader\nprocesses released together, beside an in-process Go map on the same keys.",
		0, "largest number of reader goroutines, when --goroutines is not given (default GOMAXPROCS)")
	var rc bench.ReadConfig
	f.fs.IntVar(&rc.Goroutines, "goroutines", 0, "largest number of reader goroutines (default GOMAXPROCS)")
	f.fs.IntVar(&rc.Processes, "processes", 0, "largest number of reader processes (default GOMAXPROCS; -1 none)")
	f.fs.BoolVar(&rc.Pin, "pin", false, "bind reader process i to CPU i mod cores (each runs with GOMAXPROCS=1)")
	if err := f.parse(args); err != nil || f.helped(args) {
		return err
	}
	if rc.Goroutines == 0 && f.cfg.Clients > 0 {
		rc.Goroutines = f.cfg.Clients
	}
	rc.Config = f.cfg
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	rc.Worker = func(wargs []string) *exec.Cmd {
		return exec.Command(self, append([]string{"bench", "read-worker"}, wargs...)...)
	}
	rs, err := bench.Read(ctx, rc)
	if err != nil {
		return err
	}
	return f.report(rs, "map", "shmreg bench read")
}

func benchCompare(ctx context.Context, args []string) error {
	f := newBenchFlags("compare", "The same keys and values looked up from each system, with 1 client and then\n--clients concurrent clients. A peer whose server is not installed is\nreported as not available (apt-get install redis-server etcd-server).", 50, "concurrent clients of the many-client rows")
	all := map[string]bench.Opener{}
	var names []string
	for _, o := range bench.Systems() {
		all[o.Name] = o
		names = append(names, o.Name)
	}
	systems := f.fs.String("systems", strings.Join(names, ","), "systems to measure, in order (shm: a Session per client; shm-view: Reader.View on a shared Reader)")
	if err := f.parse(args); err != nil || f.helped(args) {
		return err
	}
	var sel []bench.Opener
	for _, name := range strings.Split(*systems, ",") {
		o, ok := all[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("unknown system %q", name)
		}
		sel = append(sel, o)
	}
	rs, err := bench.Compare(ctx, f.cfg, sel)
	if err != nil {
		return err
	}
	return f.report(rs, "shm", "shmreg bench compare")
}

func benchWrite(ctx context.Context, args []string) error {
	f := newBenchFlags("write", "Upserts and deletes per second into a region by its writer, and heartbeats\nper second absorbed by one center from 1 and --clients connections.", 16, "concurrent clients of the many-client rows")
	var wc bench.WriteConfig
	f.fs.IntVar(&wc.HeartbeatEntries, "heartbeat-entries", 0, "instances registered on the center (default min(entries, 10000))")
	if err := f.parse(args); err != nil || f.helped(args) {
		return err
	}
	wc.Config = f.cfg
	rs, err := bench.Write(ctx, wc)
	if err != nil {
		return err
	}
	return f.report(rs, "", "shmreg bench write")
}

func benchPropagate(ctx context.Context, args []string) error {
	f := newBenchFlags("propagate", "Two mirrored centers holding --entries instances and --agents agents: the\ntime for a fresh agent to fill a region from the snapshot, and the latency from a registration's ack at a center to its\nvisibility in every agent's region at --rate registrations per second.\nEach agent is a `shmreg agent` process with its own region and each center\na `shmreg center` process, as on their own hosts; --in-process runs them all\ninside the harness instead, --centers-in-process only the centers.", 0, "")
	var pc bench.PropagateConfig
	f.fs.IntVar(&pc.Agents, "agents", 4, "agents (K), each with its own region")
	f.fs.IntVar(&pc.Rate, "rate", 500, "registrations per second over both centers")
	inProcess := f.fs.Bool("in-process", false, "run the agents and centers in the harness's process (sharing its heap and GC) instead of as processes")
	centersInProcess := f.fs.Bool("centers-in-process", false, "run the two centers in the harness's process (in memory); the agents stay processes")
	if err := f.parse(args); err != nil || f.helped(args) {
		return err
	}
	pc.Config = f.cfg
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	if !*inProcess {
		pc.AgentCmd = func(aargs []string) *exec.Cmd {
			return exec.Command(self, append([]string{"agent"}, aargs...)...)
		}
	}
	if !*inProcess && !*centersInProcess {
		pc.CenterCmd = func(cargs []string) *exec.Cmd {
			return exec.Command(self, append([]string{"center"}, cargs...)...)
		}
	}
	rs, err := bench.Propagate(ctx, pc)
	if err != nil {
		return err
	}
	return f.report(rs, "", "shmreg bench propagate")
}

func benchFanout(ctx context.Context, args []string) error {
	var fc bench.FanoutConfig
	fs := newFlags("bench fanout", "", "One `shmreg center` process holding --entries instances and S simulated agents\n(real protocol clients in this process), for each S of --agents: all subscribe at\nonce (fill storm), idle, then --rate writes/s for --duration each. Reports the\nfill time, the center's RSS per idle agent, delivery latency (writer's ack to\narrival at each agent), and the center's CPU per delivered record.")
	agents := fs.String("agents", "100,1000", "numbers of simulated agents (S), comma-separated")
	rates := fs.String("rate", "100,1000", "acknowledged writes per second (W) of the steady phases, comma-separated")
	fs.IntVar(&fc.Entries, "entries", 100_000, "entries (E) preloaded, svc/<service>/<id>, about 480 bytes each")
	fs.DurationVar(&fc.Run.Duration, "duration", 10*time.Second, "length of each steady phase")
	fs.Float64Var(&fc.Wide, "prefix-mix", 0.5, "share of agents subscribing to svc/; the others follow --narrow services each (negative: none)")
	fs.IntVar(&fc.Services, "services", 20, "services the entries belong to")
	fs.IntVar(&fc.Narrow, "narrow", 2, "services (svc/<service>/) each narrow agent follows")
	fs.IntVar(&fc.Writers, "writers", 16, "writer connections the steady writes are spread over")
	fs.IntVar(&fc.InFlight, "in-flight", 1024, "writes sent on schedule and not yet acknowledged, at most")
	fs.DurationVar(&fc.FillTimeout, "fill-timeout", 15*time.Minute, "give up on a fill storm after this long")
	maxRSS := fs.Int64("max-center-rss-mb", 0, "stop a fill storm once the center's RSS exceeds this (default 60% of MemAvailable)")
	centerWT := fs.Duration("center-write-timeout", 0, "the center's --write-timeout (default its own, 10s; agents that share the center's cores may need more)")
	fs.StringVar(&fc.Dir, "dir", "", "directory for the center's store (default $SHMREG_BENCH_DIR, /dev/shm, or the temp dir)")
	jsonPath := fs.String("json", "", "also write the rows to this file as JSON")
	plotPath := fs.String("plot", "", "also write a chart of delivery p99 and CPU per record against S: PNG or SVG by its extension")
	quiet := fs.Bool("quiet", false, "no progress line on stderr")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if ext := strings.ToLower(filepath.Ext(*plotPath)); *plotPath != "" && ext != ".png" && ext != ".svg" {
		return usageErrorf("--plot %s: the file name must end in .png or .svg", *plotPath)
	}
	var err error
	if fc.Agents, err = intList("--agents", *agents); err != nil {
		return err
	}
	if fc.Rates, err = intList("--rate", *rates); err != nil {
		return err
	}
	fc.MaxCenterRSS = *maxRSS << 20
	fc.CenterWriteTimeout = *centerWT
	if !*quiet {
		fc.Progress = os.Stderr
	}
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	fc.CenterCmd = func(cargs []string) *exec.Cmd { return exec.Command(self, append([]string{"center"}, cargs...)...) }
	// Each row is saved as it comes: a run of many minutes keeps what it
	// measured if it is interrupted.
	var done []bench.FanoutResult
	fc.OnRow = func(r bench.FanoutResult) {
		done = append(done, r)
		fmt.Fprintf(os.Stderr, "\r\033[K%d agents, %d writes/s: %s: p99 %s, %.0f writes/s: %s\n", r.Clients, r.Fanout.Rate, r.Status, bench.FormatNs(r.P99), r.Fanout.WritesPerSec, r.Note)
		if *jsonPath != "" {
			if err := bench.WriteFanoutJSON(*jsonPath, done); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
	rs, err := bench.Fanout(ctx, fc)
	if err != nil {
		return err
	}
	m := bench.ThisMachine()
	fmt.Printf("shmreg bench fanout — %s, %d cores, GOMAXPROCS %d, %s\n\n", m.CPUModel, m.Cores, m.GOMAXPROCS, m.GoVersion)
	if err := bench.WriteFanoutTable(os.Stdout, rs); err != nil {
		return err
	}
	for _, r := range rs {
		fmt.Printf("  %d agents, %d writes/s: %s: %s\n", r.Clients, r.Fanout.Rate, r.Status, r.Note)
	}
	if *plotPath != "" {
		return bench.WriteFanoutPlotFile(*plotPath, "shmreg bench fanout", rs)
	}
	return nil
}

// intList parses a comma-separated list of positive integers.
func intList(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, usageErrorf("%s %q: want positive integers separated by commas", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchPlot redraws the chart of a run from its --json records.
func benchPlot(args []string) error {
	fs := flag.NewFlagSet("bench plot", flag.ContinueOnError)
	in := fs.String("json", "", "records written by a bench workload's --json (required)")
	out := fs.String("plot", "", "chart to write: PNG or SVG by its extension (required)")
	title := fs.String("title", "", "chart title (default: shmreg bench and the records' workloads)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: shmreg bench plot --json in.json --plot out.png\n\nDraws the chart of records saved with --json.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if *in == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return usageErrorf("bench plot needs --json and --plot")
	}
	rs, err := bench.ReadJSON(*in)
	if err != nil {
		return err
	}
	if *title == "" {
		*title = "shmreg bench"
		if len(rs) > 0 && rs[0].Workload == "get" {
			*title = "shmreg bench compare"
		} else if len(rs) > 0 {
			*title += " " + rs[0].Workload
		}
	}
	return bench.WritePlotFile(*out, *title, rs)
}

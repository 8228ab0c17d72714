package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// ReadConfig configures the read workload.
type ReadConfig struct {
	Config
	// Goroutines is the largest number of reader goroutines in this
	// process; the workload runs 1, 2, 4, ... up to it. Default GOMAXPROCS.
	Goroutines int
	// Processes is the largest number of separate reader processes; the
	// workload runs 1, 2, 4, ... up to it. Default GOMAXPROCS; negative
	// skips the process rows.
	Processes int
	// Pin binds reader process i to CPU i mod NumCPU (from its start, so
	// every thread of it). Default off: on a machine shared with other
	// work, a pinned process cannot move off a busy core.
	Pin bool
	// Worker makes the command of one reader process given its arguments
	// (see ReadWorker). cmd/shmreg re-executes itself with a hidden
	// subcommand; tests re-execute the test binary. Nil skips the process
	// rows.
	Worker func(args []string) *exec.Cmd
}

// steps is 1, 2, 4, ... up to n, with n itself last.
func steps(n int) []int {
	var out []int
	for i := 1; i < n; i *= 2 {
		out = append(out, i)
	}
	return append(out, max(n, 1))
}

// Read measures zero-copy lookups from a region of cfg.Entries entries with
// 1..Goroutines goroutines, each beside the same workload on an in-process
// Go map in the same run, then with 1..Processes reader processes started
// together.
func Read(ctx context.Context, cfg ReadConfig) ([]Result, error) {
	cfg.Config = cfg.Config.withDefaults()
	if cfg.Goroutines <= 0 {
		cfg.Goroutines = runtime.GOMAXPROCS(0)
	}
	if cfg.Processes == 0 {
		cfg.Processes = runtime.GOMAXPROCS(0)
	}
	dir, d, err := cfg.setup("read")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer cfg.progressDone()
	ms, err := OpenMap(ctx, d, dir)
	if err != nil {
		return nil, err
	}
	cfg.progress("filling a region with %d entries...", cfg.Entries)
	ss, err := OpenShm(ctx, d, dir)
	if err != nil {
		return nil, err
	}
	defer ss.Close()
	var out []Result
	for _, g := range steps(cfg.Goroutines) {
		for _, sys := range []System{ss, ms} {
			cfg.progress("read: %s, %d goroutine(s), %d x %v...", sys.Name(), g, cfg.Run.Reps, cfg.Run.Duration)
			reps, err := MeasureReps(ctx, sys, d, g, cfg.Run)
			if err != nil {
				return nil, err
			}
			r := Summarize(sys.Name(), "read", g, reps)
			r.Entries = d.Len()
			out = append(out, r)
		}
	}
	if cfg.Worker != nil && cfg.Processes > 0 {
		rs, err := readProcesses(ctx, cfg, ss.(*shmSystem).r.Path())
		if err != nil {
			return nil, err
		}
		for i := range rs {
			rs[i].Entries = d.Len()
		}
		out = append(out, rs...)
	}
	return stamp(out, ThisMachine()), nil
}

// readProcesses measures 1, 2, 4, ... cfg.Processes reader processes.
// The repetitions are interleaved (1, 2, ... P processes, then again), so
// that each count meets the same changes in the machine's load, and each
// row's ratio to one process is the median of the ratios within a
// repetition.
func readProcesses(ctx context.Context, cfg ReadConfig, region string) ([]Result, error) {
	counts := steps(cfg.Processes)
	reps := make([][]*Sample, len(counts)) // [count][rep]
	for rep := range cfg.Run.Reps {
		for i, p := range counts {
			cfg.progress("read: shm, %d reader process(es), repetition %d of %d, %v...", p, rep+1, cfg.Run.Reps, cfg.Run.Duration)
			s, err := readProcessesTogether(ctx, cfg, region, p)
			if err != nil {
				return nil, err
			}
			reps[i] = append(reps[i], s)
		}
	}
	out := make([]Result, len(counts))
	for i, p := range counts {
		r := Summarize("shm", "read", p, reps[i])
		r.Processes = p
		var wall, byCPU []float64
		for rep, s := range reps[i] {
			one := reps[0][rep]
			wall = append(wall, s.OpsPerSec()/one.OpsPerSec())
			if s.CPU > 0 && one.CPU > 0 {
				// Ops per CPU-second does not depend on how much CPU other
				// work left: p processes as efficient as one, each with a
				// core of its own, would do p times one's ops/s.
				eff := float64(s.Ops) / s.CPU.Seconds() / (float64(one.Ops) / one.CPU.Seconds())
				byCPU = append(byCPU, float64(p)*eff)
			}
		}
		r.XOneProcess, r.XOneProcessByCPU = median(wall), median(byCPU)
		r.Note = processNote(r)
		out[i] = r
	}
	return out, nil
}

// processNote says how a reader-process row scales against one process,
// by the clock and by CPU time, how much of a core each process had, and
// how much of the window they shared.
func processNote(r Result) string {
	var parts []string
	if r.Processes > 1 {
		parts = append(parts, fmt.Sprintf("%.2fx one process", r.XOneProcess))
		if r.XOneProcessByCPU > 0 {
			parts = append(parts, fmt.Sprintf("%.2fx with a core each (by ops per CPU-second)", r.XOneProcessByCPU))
		}
	}
	if r.CPUShare > 0 {
		parts = append(parts, fmt.Sprintf("each process had %.0f%% of a core", 100*r.CPUShare))
	}
	if r.Processes > 1 && r.WindowOverlap > 0 {
		parts = append(parts, fmt.Sprintf("windows overlap %.1f%%", 100*r.WindowOverlap))
	}
	return strings.Join(parts, "; ")
}

// workerReport is what a reader process prints when done.
type workerReport struct {
	Ops       uint64         `json:"ops"`
	ElapsedNs int64          `json:"elapsed_ns"`
	StartNs   int64          `json:"start_unix_ns"` // wall clock, when counting began
	CPUNs     int64          `json:"cpu_ns"`        // the process's CPU time in the window
	Hist      map[int]uint64 `json:"hist"`
	MaxNs     int64          `json:"max_ns"`
	Err       string         `json:"err,omitempty"`
	Late      bool           `json:"late,omitempty"` // the start time had passed when it arrived
}

// releaseMargin is how far ahead of now the start time handed to the
// reader processes lies, so that each has read it before it comes. A
// repetition in which a process was not running in time is run again with
// twice the margin, up to releaseTries times.
const (
	releaseMargin = 50 * time.Millisecond
	releaseTries  = 4
)

// errLate is a repetition in which a reader process missed the start, or
// counted for less than half the window: it did not run together with the
// others.
var errLate = errors.New("bench: a reader process missed the common window")

// readProcessesTogether is readProcessesOnce, again with a wider margin
// while a process misses the common window.
func readProcessesTogether(ctx context.Context, cfg ReadConfig, region string, p int) (*Sample, error) {
	margin := releaseMargin
	for try := 1; ; try++ {
		s, err := readProcessesOnce(ctx, cfg, region, p, margin)
		if !errors.Is(err, errLate) || try == releaseTries {
			return s, err
		}
		margin *= 2
	}
}

// readProcessesOnce starts p fresh reader processes, waits until every one
// has built its lookups and says "ready", then writes each the same
// wall-clock start time on its stdin: all of them warm up from that instant
// and count over the same window, whatever the order they were scheduled
// in. Each runs with GOMAXPROCS=1, as it runs one reader goroutine; with
// cfg.Pin, process i is bound to CPU i mod NumCPU. Each is the leader of
// its own session.
func readProcessesOnce(ctx context.Context, cfg ReadConfig, region string, p int, margin time.Duration) (*Sample, error) {
	args := []string{
		"--region", region, "--entries", strconv.Itoa(cfg.Entries), "--seed", strconv.FormatUint(cfg.Seed, 10),
		"--duration", cfg.Run.Duration.String(), "--warmup", cfg.Run.Warmup.String(),
		"--sample-every", strconv.Itoa(cfg.Run.SampleEvery),
	}
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var children []child
	defer func() {
		for _, c := range children {
			c.stdin.Close()
			if c.cmd.ProcessState == nil {
				c.cmd.Process.Kill()
				c.cmd.Wait()
			}
		}
	}()
	for i := range p {
		cmd := cfg.Worker(args)
		if cmd.Env == nil {
			cmd.Env = os.Environ()
		}
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1") // the last value of a name wins
		// A session of its own, as a separate service's process would
		// have: with the kernel's autogroup scheduling, the processes of
		// one session share one slice of a busy machine, so readers left
		// in the harness's session would split one slice between them.
		// Pdeathsig: a reader is killed if the harness dies (strictly, if
		// the harness thread that started it exits).
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		cpu := -1
		if cfg.Pin {
			cpu = i % runtime.NumCPU()
		}
		if err := startOn(cmd, cpu); err != nil {
			return nil, fmt.Errorf("start reader process: %w", err)
		}
		children = append(children, child{cmd, stdin, bufio.NewReader(stdout)})
	}
	// A reader that hangs before it reports would hang the run: every
	// reader is killed (and the reads below see EOF) when ctx ends or the
	// run overstays its time by a minute.
	killAll := func() {
		for _, c := range children {
			c.cmd.Process.Kill()
		}
	}
	watchdog := time.AfterFunc(margin+cfg.Run.Warmup+cfg.Run.Duration+time.Minute, killAll)
	defer watchdog.Stop()
	defer context.AfterFunc(ctx, killAll)()
	for _, c := range children {
		line, err := c.out.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			return nil, fmt.Errorf("reader process did not get ready: %q %v", line, err)
		}
	}
	at := time.Now().Add(margin)
	for _, c := range children {
		if _, err := fmt.Fprintf(c.stdin, "%d\n", at.UnixNano()); err != nil {
			return nil, fmt.Errorf("release reader process: %w", err)
		}
	}
	s := &Sample{Overlap: 1}
	late := false
	var (
		rate                float64
		lastStart, firstEnd time.Time
		longest             time.Duration
	)
	for i, c := range children {
		var rep workerReport
		if err := json.NewDecoder(c.out).Decode(&rep); err != nil {
			return nil, fmt.Errorf("reader process report: %w", err)
		}
		if err := c.cmd.Wait(); err != nil {
			return nil, fmt.Errorf("reader process: %w", err)
		}
		if rep.Err != "" {
			return nil, fmt.Errorf("reader process: %s", rep.Err)
		}
		el := time.Duration(rep.ElapsedNs)
		if rep.Late || el < cfg.Run.Duration/2 {
			late = true // read every report all the same, so that each process exits
			continue
		}
		start := time.Unix(0, rep.StartNs)
		end := start.Add(el)
		if i == 0 || start.After(lastStart) {
			lastStart = start
		}
		if i == 0 || end.Before(firstEnd) {
			firstEnd = end
		}
		longest = max(longest, el)
		rate += float64(rep.Ops) / el.Seconds()
		s.PerClient = append(s.PerClient, rep.Ops)
		s.CPU += time.Duration(rep.CPUNs)
		s.Hist.Merge(histFromSparse(rep.Hist, rep.MaxNs))
	}
	if late {
		return nil, errLate
	}
	// The total rate is the sum of each process's own rate; Ops is scaled
	// to the longest window so that Ops/Elapsed gives that sum.
	s.Elapsed = longest
	s.Ops = uint64(rate * longest.Seconds())
	if longest > 0 {
		s.Overlap = max(0, firstEnd.Sub(lastStart).Seconds()/longest.Seconds())
	}
	return s, nil
}

// ReadWorker is the body of one reader process: it opens the region named
// by --region, prints "ready", reads its start time (Unix nanoseconds, one
// line) from stdin, measures one goroutine of zero-copy lookups from then
// on, and prints a JSON report on stdout.
func ReadWorker(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("read-worker", flag.ContinueOnError)
	region := fs.String("region", "", "region path")
	entries := fs.Int("entries", 100_000, "dataset entries")
	seed := fs.Uint64("seed", 1, "dataset seed")
	dur := fs.Duration("duration", 2*time.Second, "measured window")
	warm := fs.Duration("warmup", 500*time.Millisecond, "warm-up")
	every := fs.Int("sample-every", 0, "time one op in every N (0: 32)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	report := func(rep workerReport) error { return json.NewEncoder(stdout).Encode(rep) }
	d, err := NewDataset(*entries, *seed)
	if err != nil {
		return err
	}
	r, err := shm.Open(*region, shm.Options{})
	if err != nil {
		return err
	}
	defer r.Close()
	l, err := sessionLookup(r)
	if err != nil {
		return err
	}
	if err := l(ctx, d.Keys[d.Order[0]]); err != nil { // fail before "ready", not after
		return err
	}
	if *every <= 0 {
		*every = 32
	}
	fmt.Fprintln(stdout, "ready")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read-worker: no start time on stdin: %w", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("read-worker: start time %q: %w", line, err)
	}
	at := time.Unix(0, ns)
	if time.Now().After(at) {
		return report(workerReport{Late: true})
	}
	s, err := measureWith(ctx, d, []Lookup{l}, Run{Duration: *dur, Warmup: *warm}.withDefaults(), *every, at)
	if err != nil {
		return report(workerReport{Err: err.Error()})
	}
	return report(workerReport{
		Ops: s.Ops, ElapsedNs: int64(s.Elapsed), StartNs: s.Start.UnixNano(), CPUNs: int64(s.CPU),
		Hist: s.Hist.sparse(), MaxNs: s.Hist.Max,
	})
}

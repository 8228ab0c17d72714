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
		path := ss.(*shmSystem).r.Path()
		for _, p := range steps(cfg.Processes) {
			cfg.progress("read: shm, %d reader process(es), %d x %v...", p, cfg.Run.Reps, cfg.Run.Duration)
			r, err := readProcesses(ctx, cfg, path, p)
			if err != nil {
				return nil, err
			}
			r.Entries = d.Len()
			out = append(out, r)
		}
		if one, ok := find(out, "shm", Result{Workload: "read", Clients: 1, Processes: 1}); ok {
			for i := range out {
				if out[i].Processes > 1 {
					out[i].Note = fmt.Sprintf("%.2fx one process", out[i].OpsPerSec/one.OpsPerSec)
				}
			}
		}
	}
	return stamp(out, ThisMachine()), nil
}

// workerReport is what a reader process prints when done.
type workerReport struct {
	Ops       uint64         `json:"ops"`
	ElapsedNs int64          `json:"elapsed_ns"`
	Hist      map[int]uint64 `json:"hist"`
	MaxNs     int64          `json:"max_ns"`
	Err       string         `json:"err,omitempty"`
}

// readProcesses runs one repetition set with p reader processes. Each
// repetition starts p fresh processes, waits until every one has built its
// lookups and says "ready", then releases them together by closing the
// write end of a pipe that all of them block reading.
func readProcesses(ctx context.Context, cfg ReadConfig, region string, p int) (Result, error) {
	var reps []*Sample
	for range cfg.Run.Reps {
		s, err := readProcessesOnce(ctx, cfg, region, p)
		if err != nil {
			return Result{}, err
		}
		reps = append(reps, s)
	}
	r := Summarize("shm", "read", p, reps)
	r.Processes = p
	return r, nil
}

func readProcessesOnce(ctx context.Context, cfg ReadConfig, region string, p int) (*Sample, error) {
	gateR, gateW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer gateR.Close()
	defer gateW.Close()
	args := []string{
		"--region", region, "--entries", strconv.Itoa(cfg.Entries), "--seed", strconv.FormatUint(cfg.Seed, 10),
		"--duration", cfg.Run.Duration.String(), "--warmup", cfg.Run.Warmup.String(),
		"--sample-every", strconv.Itoa(cfg.Run.SampleEvery),
	}
	type child struct {
		cmd *exec.Cmd
		out *bufio.Reader
	}
	var children []child
	defer func() {
		for _, c := range children {
			if c.cmd.ProcessState == nil {
				c.cmd.Process.Kill()
				c.cmd.Wait()
			}
		}
	}()
	for range p {
		cmd := cfg.Worker(args)
		cmd.ExtraFiles = []*os.File{gateR} // fd 3 in the child
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start reader process: %w", err)
		}
		children = append(children, child{cmd, bufio.NewReader(stdout)})
	}
	for _, c := range children {
		line, err := c.out.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ready" {
			return nil, fmt.Errorf("reader process did not get ready: %q %v", line, err)
		}
	}
	gateW.Close() // release: every child's read of fd 3 returns EOF now
	s := &Sample{}
	for _, c := range children {
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
		s.Ops += rep.Ops
		s.PerClient = append(s.PerClient, rep.Ops)
		s.Elapsed = max(s.Elapsed, el)
		s.Hist.Merge(histFromSparse(rep.Hist, rep.MaxNs))
	}
	// Ops/s in total is the sum of each process's rate; Elapsed is the
	// longest window, so s.OpsPerSec() slightly understates it: use the
	// sum of rates instead.
	var rate float64
	for _, n := range s.PerClient {
		rate += float64(n) / s.Elapsed.Seconds()
	}
	s.Ops = uint64(rate * s.Elapsed.Seconds())
	return s, nil
}

// ReadWorker is the body of one reader process: it opens the region named
// by --region, prints "ready", waits for fd 3 to reach EOF (the release
// gate), measures one goroutine of zero-copy lookups, and prints a JSON
// report on stdout.
func ReadWorker(ctx context.Context, args []string, stdout io.Writer) error {
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
	l := viewLookup(r)
	if err := l(ctx, d.Keys[d.Order[0]]); err != nil { // fail before "ready", not after
		return err
	}
	if *every <= 0 {
		*every = 32
	}
	gate := os.NewFile(3, "gate")
	if gate == nil {
		return errors.New("read-worker: no release gate on fd 3")
	}
	release := make(chan struct{})
	go func() { io.Copy(io.Discard, gate); close(release) }()
	fmt.Fprintln(stdout, "ready")
	s, err := measureWith(ctx, d, []Lookup{l}, Run{Duration: *dur, Warmup: *warm}.withDefaults(), *every, release)
	if err != nil {
		return report(workerReport{Err: err.Error()})
	}
	return report(workerReport{Ops: s.Ops, ElapsedNs: int64(s.Elapsed), Hist: s.Hist.sparse(), MaxNs: s.Hist.Max})
}

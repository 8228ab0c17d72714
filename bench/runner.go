package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Phases of one measurement, published by the coordinator in one atomic
// word that every client reads once an operation: a load of a line that is
// written three times a run costs a nanosecond, where reading the clock
// every operation would cost tens.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// Run is how long and how often to measure.
type Run struct {
	// Duration of each measured repetition. Default 2s.
	Duration time.Duration
	// Warmup before each repetition, not counted. Default 500ms.
	Warmup time.Duration
	// Reps is the number of repetitions; the median is reported. Default 3.
	Reps int
	// SampleEvery times one operation in every SampleEvery. 0 picks it from
	// the warm-up: every operation of a system slower than 2µs an
	// operation, one in 32 otherwise.
	SampleEvery int
}

func (r Run) withDefaults() Run {
	if r.Duration <= 0 {
		r.Duration = 2 * time.Second
	}
	if r.Warmup < 0 {
		r.Warmup = 0
	} else if r.Warmup == 0 {
		r.Warmup = 500 * time.Millisecond
	}
	if r.Reps <= 0 {
		r.Reps = 3
	}
	return r
}

// Sample is one repetition's outcome.
type Sample struct {
	Ops       uint64        // operations counted in the measured window
	Elapsed   time.Duration // length of the measured window
	PerClient []uint64      // operations per client
	Hist      Histogram     // sampled latencies
	// Start is the wall-clock time the measured window began.
	Start time.Time
	// CPU is the CPU time (user + system) the measuring processes spent in
	// the measured window. Only reader processes set it: there the process
	// does nothing but look up, so it is the lookups' CPU time.
	CPU time.Duration
	// Overlap is, for reader processes, the share of the longest window
	// during which every process was measuring (1: identical windows).
	Overlap float64
}

// OpsPerSec is Ops over Elapsed.
func (s *Sample) OpsPerSec() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Ops) / s.Elapsed.Seconds()
}

// Measure runs clients goroutines, each calling its own Lookup on the
// dataset's keys in the shared order (client c starting at its own offset),
// for one warm-up and one measured window.
func Measure(ctx context.Context, sys System, d *Dataset, clients int, run Run) (*Sample, error) {
	run = run.withDefaults()
	if clients < 1 {
		clients = 1
	}
	lookups := make([]Lookup, clients)
	for i := range lookups {
		l, err := sys.Client(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("%s client %d: %w", sys.Name(), i, err)
		}
		lookups[i] = l
	}
	every := run.SampleEvery
	if every <= 0 {
		every = 32
		if perOp, err := probe(ctx, lookups[0], d); err != nil {
			return nil, fmt.Errorf("%s: %w", sys.Name(), err)
		} else if perOp >= 2*time.Microsecond {
			every = 1
		}
	}
	s, err := measureWith(ctx, d, lookups, run, every, time.Time{})
	if s != nil {
		s.CPU = 0 // this process also runs the harness (and servers): not the lookups' own
	}
	return s, err
}

// probe times a few hundred lookups to choose how often to sample.
func probe(ctx context.Context, l Lookup, d *Dataset) (time.Duration, error) {
	const n = 256
	t0 := time.Now()
	for i := range n {
		if err := l(ctx, d.Keys[d.Order[i%len(d.Order)]]); err != nil {
			return 0, err
		}
	}
	return time.Since(t0) / n, nil
}

// measureWith is Measure's loop. The clients start at the wall-clock time
// at (now if zero), warm up until at+Warmup and are counted until
// at+Warmup+Duration: reader processes given the same at measure the same
// window.
func measureWith(ctx context.Context, d *Dataset, lookups []Lookup, run Run, every int, at time.Time) (*Sample, error) {
	var (
		phase  atomic.Int32
		wg     sync.WaitGroup
		ready  sync.WaitGroup
		start  = make(chan struct{})
		counts = make([]uint64, len(lookups))
		hists  = make([]Histogram, len(lookups))
		errs   = make([]error, len(lookups))
	)
	for c, l := range lookups {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			counts[c], errs[c] = client(ctx, l, d, d.start(c, len(lookups)), every, &phase, &hists[c], &ready, start)
		}()
	}
	ready.Wait()
	if at.IsZero() {
		at = time.Now()
	}
	sleepCtx(ctx, time.Until(at))
	close(start)
	if !sleepCtx(ctx, time.Until(at.Add(run.Warmup))) {
		phase.Store(phaseStop)
		wg.Wait()
		return nil, ctx.Err()
	}
	t0, cpu0 := time.Now(), cpuTime()
	phase.Store(phaseMeasure)
	sleepCtx(ctx, time.Until(at.Add(run.Warmup+run.Duration)))
	phase.Store(phaseStop)
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Sample{Elapsed: elapsed, PerClient: counts, Start: t0, CPU: cpu}
	for c := range lookups {
		if errs[c] != nil {
			return nil, errs[c]
		}
		s.Ops += counts[c]
		s.Hist.Merge(&hists[c])
	}
	return s, nil
}

// client is one closed-loop client: it looks keys up back to back, counts
// the operations done while the phase is phaseMeasure, and times one in
// every `every` of them.
func client(ctx context.Context, l Lookup, d *Dataset, pos, every int, phase *atomic.Int32, h *Histogram, ready *sync.WaitGroup, start <-chan struct{}) (uint64, error) {
	ready.Done()
	<-start
	order, keys := d.Order, d.Keys
	var (
		n        uint64
		counting bool
		tick     int
	)
	for {
		p := phase.Load()
		if p == phaseStop {
			return n, nil
		}
		if p == phaseMeasure && !counting {
			counting, n = true, 0
		}
		if pos == len(order) {
			pos = 0
		}
		key := keys[order[pos]]
		pos++
		tick++
		if tick == every {
			tick = 0
			t0 := time.Now()
			err := l(ctx, key)
			if counting {
				h.Record(time.Since(t0))
			}
			if err != nil {
				return n, err
			}
		} else if err := l(ctx, key); err != nil {
			return n, err
		}
		n++
	}
}

// cpuTime is this process's CPU time so far, user and system; 0 if the
// kernel will not say.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// MeasureReps runs Measure run.Reps times and returns every repetition.
func MeasureReps(ctx context.Context, sys System, d *Dataset, clients int, run Run) ([]*Sample, error) {
	run = run.withDefaults()
	out := make([]*Sample, 0, run.Reps)
	for range run.Reps {
		s, err := Measure(ctx, sys, d, clients, run)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		runtime.GC() // start the next repetition without the last one's garbage
	}
	return out, nil
}

// median returns the median of xs (the lower middle for an even count, so
// that the figure is one that was measured).
func median[T int64 | float64](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

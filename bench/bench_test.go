package bench

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

// The testing.B side of the harness: the same lookups as "shmreg bench
// compare", one client, so that benchstat can compare commits:
//
//	go test -run '^$' -bench Lookup -count 10 ./bench > new.txt
//	benchstat old.txt new.txt
//
// Every system is loaded with the same 100K-entry dataset and looked up in
// the same order; each reports lookups/s beside ns/op.

var (
	benchDataOnce sync.Once
	benchData     *Dataset
)

func dataset(b *testing.B) *Dataset {
	benchDataOnce.Do(func() {
		d, err := NewDataset(100_000, 1)
		if err != nil {
			panic(err)
		}
		benchData = d
	})
	return benchData
}

func BenchmarkLookup(b *testing.B) {
	for _, o := range Systems() {
		b.Run(o.Name, func(b *testing.B) {
			d := dataset(b)
			dir := b.TempDir()
			if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
				if dir, err = os.MkdirTemp("/dev/shm", "shmreg-bench-"); err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
			}
			ctx := context.Background()
			sys, err := o.Open(ctx, d, dir)
			if errors.Is(err, ErrNotAvailable) {
				b.Skip(err)
			}
			if err != nil {
				b.Fatal(err)
			}
			defer sys.Close()
			l, err := sys.Client(ctx, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := l(ctx, d.Keys[d.Order[i%len(d.Order)]]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}

// BenchmarkRegionWrite is the write workload's region rows: one Put, one
// Delete-or-reinsert, and a Commit of 100 Puts (reported per entry).
func BenchmarkRegionWrite(b *testing.B) {
	d := dataset(b)
	w, _, err := FillRegion(d, b.TempDir(), "write")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	for _, wl := range regionWrites(w, d) {
		b.Run(wl.name, func(b *testing.B) {
			l, _ := wl.sys.Client(context.Background(), 0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := l(context.Background(), d.Keys[d.Order[i%len(d.Order)]]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*wl.perOp)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkHeartbeat is one connection renewing one instance a call.
func BenchmarkHeartbeat(b *testing.B) {
	ctx := context.Background()
	c, err := StartCenter(ctx, pair.Options{Options: center.Options{Insecure: true, SelfPreservation: -1}})
	if err != nil {
		b.Fatal(err)
	}
	defer StopCenter(c)
	const n = 1000
	if err := RegisterAll(ctx, c.Addr().String(), 0, n, 8); err != nil {
		b.Fatal(err)
	}
	hs := &heartbeatSystem{addr: c.Addr().String()}
	defer hs.Close()
	l, err := hs.Client(ctx, 0)
	if err != nil {
		b.Fatal(err)
	}
	d := dataset(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l(ctx, d.Keys[i%n]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "heartbeats/s")
}

// BenchmarkClockPair is what timing one sampled operation adds to it: the
// two clock reads around it. Sampled latencies include this cost.
func BenchmarkClockPair(b *testing.B) {
	var sum time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		sum += time.Since(t0)
	}
	if sum < 0 {
		b.Fatal("clock went backwards")
	}
}

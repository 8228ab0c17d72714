package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// BenchmarkPropagation measures the time from a write acknowledged by a
// center to its visibility in an agent's region (a reader waiting on the
// region's change notification), on loopback, in one process. It reports
// p50 and p99 (target: p99 under 5ms).
func BenchmarkPropagation(b *testing.B) {
	c := startCenter(b, pair.Options{Options: center.Options{Insecure: true}})
	dir := b.TempDir()
	startAgent(b, testOptions(dir, []string{c.Addr().String()}, "cfg/"))
	r, err := shm.Open(filepath.Join(dir, "region"), shm.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	admin := dialAdmin(b, c.Addr().String())
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		key := []byte(fmt.Sprintf("cfg/k%d", i%1000))
		val := fmt.Appendf(nil, "v%d", i)
		seq := r.Seq()
		if _, err := admin.Put(ctx, string(key), val); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		for {
			if v, err := r.Get(key); err == nil && string(v) == string(val) {
				break
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			seq, err = r.Wait(wctx, seq)
			cancel()
			if err != nil {
				b.Fatalf("write %d never reached the region: %v", i, err)
			}
		}
		lat = append(lat, time.Since(acked))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkFill100K measures how long a fresh agent takes to fill an empty
// region from a 100K-entry snapshot (target: under 1s), beside the same
// entries written by one direct region commit (the floor).
func BenchmarkFill100K(b *testing.B) {
	const n = 100_000
	c := startCenter(b, pair.Options{Options: center.Options{Insecure: true}})
	admin := dialAdmin(b, c.Addr().String())
	ctx := context.Background()
	val := make([]byte, 64)
	var puts sync100K
	for i := range n {
		puts.keys = append(puts.keys, fmt.Sprintf("cfg/%06d", i))
	}
	// Load the center concurrently (each Put waits for its commit).
	errc := make(chan error, 16)
	for w := range 16 {
		go func() {
			for i := w; i < n; i += 16 {
				if _, err := admin.Put(ctx, puts.keys[i], val); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range 16 {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.Run("agent", func(b *testing.B) {
		for range b.N {
			dir := b.TempDir()
			opts := testOptions(dir, []string{c.Addr().String()}, "cfg/")
			opts.Shm.Size = 64 << 20
			start := time.Now()
			a, err := New(opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := a.Start(ctx); err != nil {
				b.Fatal(err)
			}
			for a.Status().Entries < n {
				time.Sleep(100 * time.Microsecond)
			}
			b.ReportMetric(time.Since(start).Seconds()*1000, "fill-ms")
			b.StopTimer()
			stopAgent(b, a)
			b.StartTimer()
		}
	})
	b.Run("direct-commit", func(b *testing.B) {
		for range b.N {
			w, err := shm.OpenWriter(filepath.Join(b.TempDir(), "r"), shm.Options{Size: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			var batch shm.Batch
			for _, k := range puts.keys {
				batch.Put([]byte(k), val)
			}
			if err := w.Commit(&batch); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds()*1000, "fill-ms")
			w.Close()
		}
	})
}

type sync100K struct{ keys []string }

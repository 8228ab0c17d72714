package discovery

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// sink keeps results alive so the compiler cannot drop the work.
var sink registry.Instance

func benchRegion(b *testing.B, n int) *Catalog {
	w, c := testRegion(b, Options{})
	for i := range n {
		in := inst("orders", "i"+strconv.Itoa(i), 8000+i)
		in.Metadata = map[string]string{"load": strconv.Itoa(i % 7), "zone": "eu-1"}
		in.Weight = 1 + i%3
		putInstance(b, w, in)
	}
	// Unrelated entries, so a re-scan is a scan of a prefix, not of all.
	for i := range 1000 {
		if err := w.Put([]byte("config/"+strconv.Itoa(i)), []byte("v")); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkInstances compares a cached Instances call with reading a plain
// slice held in a struct, and shows the cost of a re-scan (what the first
// call after a commit elsewhere in the region pays).
func BenchmarkInstances(b *testing.B) {
	c := benchRegion(b, 10)
	b.Run("catalog", func(b *testing.B) {
		for b.Loop() {
			ins, err := c.Instances("orders")
			if err != nil {
				b.Fatal(err)
			}
			sink = ins[0]
		}
	})
	b.Run("plain-slice", func(b *testing.B) {
		ins, _ := c.Instances("orders")
		holder := &struct{ ins []registry.Instance }{slices.Clone(ins)}
		for b.Loop() {
			sink = holder.ins[0]
		}
	})
	b.Run("rescan-unchanged", func(b *testing.B) {
		sc, _ := c.service("orders")
		for b.Loop() {
			sc.cur.Load().checked.Add(1) // as if a commit had happened
			ins, err := c.Instances("orders")
			if err != nil {
				b.Fatal(err)
			}
			sink = ins[0]
		}
	})
}

// BenchmarkPick compares each strategy's Pick with indexing a plain slice
// round robin, over 10 instances.
func BenchmarkPick(b *testing.B) {
	c := benchRegion(b, 10)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	for s := RoundRobin; s <= LeastLoaded; s++ {
		b.Run(s.String(), func(b *testing.B) {
			p, err := c.Picker("orders", PickerOptions{Strategy: s})
			if err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				in, err := p.Pick(keys[i&1023])
				if err != nil {
					b.Fatal(err)
				}
				sink = in
				i++
			}
		})
	}
	b.Run("plain-slice-index", func(b *testing.B) {
		ins, _ := c.Instances("orders")
		ins = slices.Clone(ins)
		i := 0
		for b.Loop() {
			sink = ins[i%len(ins)]
			i++
		}
	})
}

// latencyReport records commit-to-event latencies and reports percentiles.
func latencyReport(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.5), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
	b.ReportMetric(at(1), "max-µs")
}

// eventTick extracts bench/tick's sequence number and stamp from an event.
func eventTick(ev Event) (seq int, stamp int64, ok bool) {
	for _, ch := range ev.Changes {
		if ch.Key == "bench/tick" && !ch.Deleted {
			return parseTick(ch.Value)
		}
	}
	return 0, 0, false
}

// BenchmarkWatchLatency measures the time from a writer's commit to the
// watcher's event, one commit at a time (the next is written after the
// event arrived), with the writer in this process.
func BenchmarkWatchLatency(b *testing.B) {
	w, c := testRegion(b, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "bench/")
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1024)
	for b.Loop() {
		start := time.Now()
		if err := w.Put([]byte("bench/tick"), strconv.AppendInt(nil, start.UnixNano(), 10)); err != nil {
			b.Fatal(err)
		}
		<-ch
		lat = append(lat, time.Since(start))
	}
	latencyReport(b, lat)
}

// BenchmarkWatchLatencyCrossProcess is BenchmarkWatchLatency with the
// writer in another process (the test binary re-run as a child), which
// stamps each value with the wall clock just before committing it; one
// commit every 2ms, so the watcher is asleep in the futex each time. A
// commit that lands while the previous event is being handled merges with
// the next (Watch is level-triggered): such ticks are counted as delivered
// but give no latency sample; "merged" reports their share.
func BenchmarkWatchLatencyCrossProcess(b *testing.B) {
	w, c := testRegion(b, Options{})
	path := w.Path()
	if err := w.Close(); err != nil { // the child becomes the writer
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "bench/")
	if err != nil {
		b.Fatal(err)
	}
	n := b.N
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRoleEnv+"=ticker", "SHMREG_TICK_REGION="+path,
		"SHMREG_TICK_COUNT="+strconv.Itoa(n), "SHMREG_TICK_EVERY=2ms")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, n)
	timeout := time.After(time.Duration(n)*2*time.Millisecond + 30*time.Second)
	b.ResetTimer()
	for last := 0; last < n; {
		select {
		case ev := <-ch:
			now := time.Now().UnixNano()
			if seq, ts, ok := eventTick(ev); ok && seq > last {
				lat = append(lat, time.Duration(now-ts))
				last = seq
			}
		case <-timeout:
			b.Fatalf("tick %d never arrived", n)
		}
	}
	b.StopTimer()
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	latencyReport(b, lat)
	b.ReportMetric(float64(n-len(lat))/float64(n), "merged")
}

package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"github.com/shmreg/shmreg/registry/pair"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The benchmarks run whole centers in this process, on loopback, with
// etcd's production raft timings (100ms ticks, 1s elections) and its
// fsync'd WAL; the pair beside them fsyncs its bbolt store. Both share the
// machine with the clients. Run them with
//
//	go test -run '^$' -bench . -benchtime 2000x ./registry/cluster

// inProcessCluster starts voters (and listeners) as centers of this process.
func inProcessCluster(tb testing.TB, voters, listeners int) []*Center {
	tb.Helper()
	ctx := context.Background()
	type nd struct{ name, peer, client string }
	var nds []nd
	var parts []string
	for i := range voters {
		n := nd{fmt.Sprintf("v%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", freePort(tb)), fmt.Sprintf("http://127.0.0.1:%d", freePort(tb))}
		nds = append(nds, n)
		parts = append(parts, n.name+"="+n.peer)
	}
	dir := tb.TempDir()
	opts := func(n nd) Options {
		return Options{Options: center.Options{Insecure: true}, Name: n.name, DataDir: filepath.Join(dir, n.name),
			PeerURL: n.peer, ClientURL: n.client, InitialCluster: strings.Join(parts, ","), NoPromote: true}
	}
	cs := make([]*Center, voters)
	errs := make([]error, voters)
	var wg sync.WaitGroup
	for i, n := range nds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs[i], errs[i] = New(ctx, opts(n))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	for i := range listeners {
		n := nd{fmt.Sprintf("l%d", i+1), fmt.Sprintf("http://127.0.0.1:%d", freePort(tb)), fmt.Sprintf("http://127.0.0.1:%d", freePort(tb))}
		o := opts(n)
		o.InitialCluster, o.Listener, o.Join = "", true, []string{nds[0].client}
		c, err := New(ctx, o)
		if err != nil {
			tb.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		if err := c.Start(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		for _, c := range cs {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c.Shutdown(sctx)
			cancel()
		}
	})
	return cs
}

// inProcessPair starts a mirrored pair with stores in a temporary directory.
func inProcessPair(tb testing.TB) []*pair.Center {
	tb.Helper()
	dir := tb.TempDir()
	a, b := fmt.Sprintf("127.0.0.1:%d", freePort(tb)), fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	var cs []*pair.Center
	for i, addrs := range [][2]string{{a, b}, {b, a}} {
		c, err := pair.New(pair.Options{Options: center.Options{Insecure: true, Listen: addrs[0]}, Peer: addrs[1], DataDir: filepath.Join(dir, fmt.Sprint(i))})
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			tb.Fatal(err)
		}
		cs = append(cs, c)
	}
	tb.Cleanup(func() {
		for _, c := range cs {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c.Shutdown(sctx)
			cancel()
		}
	})
	return cs
}

// writeLoad makes b.N acknowledged puts through addr from writers
// concurrent connections, and reports writes/s and latency percentiles.
func writeLoad(b *testing.B, addr string, writers int) {
	conns := make([]*registry.Conn, writers)
	for i := range conns {
		conns[i] = dial(b, addr, wire.RoleAdmin)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, writers)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if _, err := conns[w].Put(ctx, fmt.Sprintf("bench/%d/%d", w, i%1000), []byte("0123456789abcdef0123456789abcdef")); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	reportLatency(b, all, "ack")
	b.ReportMetric(float64(len(all))/el.Seconds(), "writes/s")
}

func reportLatency(b *testing.B, d []time.Duration, what string) {
	if len(d) == 0 {
		return
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, what+"-p50-ms")
	b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, what+"-p99-ms")
}

// BenchmarkWrites: acknowledged writes through a voter of a three-voter
// cluster (a majority committed each) and through a center of the pair
// (its own fsync), side by side, with 1 and 16 writers.
func BenchmarkWrites(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("cluster/writers=%d", writers), func(b *testing.B) {
			cs := inProcessCluster(b, 3, 0)
			writeLoad(b, cs[1].Addr().String(), writers)
		})
		b.Run(fmt.Sprintf("pair/writers=%d", writers), func(b *testing.B) {
			cs := inProcessPair(b)
			writeLoad(b, cs[0].Addr().String(), writers)
		})
	}
}

// propagation writes through one center and measures, for each write, the
// time from its acknowledgement to its push by another center.
func propagation(b *testing.B, writeAddr, subAddr string) {
	w := dial(b, writeAddr, wire.RoleAdmin)
	s := dial(b, subAddr, wire.RoleAgent)
	ctx := context.Background()
	sub, err := s.Subscribe(ctx, []string{"prop/"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sub.Next(ctx); err != nil { // the snapshot
		b.Fatal(err)
	}
	var mu sync.Mutex
	acked := make(map[string]time.Time)
	var lat []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seen := 0; seen < b.N; {
			bt, err := sub.Next(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			for _, r := range bt.Records {
				if at, ok := acked[r.Key]; ok {
					lat = append(lat, now.Sub(at))
				} else {
					acked[r.Key] = now // pushed before acknowledged
				}
				seen++
			}
			mu.Unlock()
		}
	}()
	b.ResetTimer()
	for i := range b.N {
		k := fmt.Sprintf("prop/%d", i)
		if _, err := w.Put(ctx, k, []byte("v")); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		mu.Lock()
		if _, pushed := acked[k]; pushed {
			lat = append(lat, 0)
		} else {
			acked[k] = now
		}
		mu.Unlock()
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatal("pushes missing")
	}
	b.StopTimer()
	reportLatency(b, lat, "push-after-ack")
}

// BenchmarkPropagation: from a write's acknowledgement by one center to its
// push by another (cluster: a voter to a listener; pair: one center to the
// other's subscriber).
func BenchmarkPropagation(b *testing.B) {
	b.Run("cluster", func(b *testing.B) {
		cs := inProcessCluster(b, 3, 1)
		propagation(b, cs[0].Addr().String(), cs[3].Addr().String())
	})
	b.Run("pair", func(b *testing.B) {
		cs := inProcessPair(b)
		propagation(b, cs[0].Addr().String(), cs[1].Addr().String())
	})
}

// BenchmarkListenerFill100K: a new subscriber's snapshot of 100K key/values
// from a listener (the records written straight into etcd, 128 a
// transaction, in the stored form).
func BenchmarkListenerFill100K(b *testing.B) {
	cs := inProcessCluster(b, 3, 1)
	n := fillSize()
	cli := cs[0].Cluster().Client()
	ctx := context.Background()
	prefix := cs[0].Cluster().recPrefix
	for i := 0; i < n; i += 128 {
		var ops []clientv3.Op
		for j := i; j < min(i+128, n); j++ {
			s, _ := encodeStored(&stored{Value: []byte(fmt.Sprintf("value of key %06d, about as long as an instance's address and port", j))})
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%sfill/%06d", prefix, j), s))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("wrote %d records into etcd", n)
	l := cs[3]
	for held := 0; held < n; {
		time.Sleep(10 * time.Millisecond)
		l.Cluster().Read(func(v center.View) { held = v.Len() })
	}
	b.Logf("the listener holds them")
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		c := dial(b, l.Addr().String(), wire.RoleAgent)
		sub, err := c.Subscribe(ctx, []string{"fill/"}, 0)
		if err != nil {
			b.Fatal(err)
		}
		bt, err := sub.Next(ctx)
		if err != nil || !bt.Snapshot || len(bt.Records) != n {
			b.Fatalf("fill: %d records, snapshot %v, %v", len(bt.Records), bt.Snapshot, err)
		}
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "fill-ms")
		c.Close()
	}
}

// fillSize is 100K, or $SHMREG_FILL.
func fillSize() int {
	if s := os.Getenv("SHMREG_FILL"); s != "" {
		n, _ := strconv.Atoi(s)
		return n
	}
	return 100_000
}

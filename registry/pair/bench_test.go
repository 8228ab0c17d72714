package pair

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// fillInstances registers n instances (TTL 1h) directly through the
// committer, 1000 per batch.
func fillInstances(b *testing.B, c *Center, n int) []string {
	keys := make([]string, 0, n)
	ops := make([]op, 0, 1000)
	flush := func() {
		if _, err := c.backend.write(context.Background(), false, ops...); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	for i := range n {
		in := wire.Instance{Service: fmt.Sprintf("svc%03d", i%100), ID: fmt.Sprintf("i%06d", i), Address: "10.1.2.3", Port: 8000 + i%1000,
			Metadata: map[string]string{"zone": "a", "version": "1.2.3"}, TTL: time.Hour}
		v, err := wire.EncodeInstance(in)
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, in.Key())
		ops = append(ops, op{kind: opPut, key: in.Key(), value: v, ttl: in.TTL})
		if len(ops) == cap(ops) {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
	return keys
}

// BenchmarkHeartbeats measures heartbeats one center absorbs with 100K
// registered instances: one instance key per heartbeat frame, 8 connections
// with 32 requests in flight each (client and center share the machine).
func BenchmarkHeartbeats(b *testing.B) {
	c := testCenter(b, Options{Options: center.Options{Insecure: true, SweepInterval: time.Second}})
	keys := fillInstances(b, c, 100_000)
	const conns, inflight = 8, 32
	cs := make([]*registry.Conn, conns)
	for i := range cs {
		cs[i] = dialT(b, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conns * inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := cs[w%conns]
			ctx := context.Background()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if missing, err := conn.Heartbeat(ctx, keys[i%int64(len(keys))]); err != nil || len(missing) != 0 {
					b.Errorf("heartbeat: %v %v", missing, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "heartbeats/s")
}

// BenchmarkHeartbeatsBatched: an SDK process heartbeats all its instances in
// one frame; 100 keys per frame here.
func BenchmarkHeartbeatsBatched(b *testing.B) {
	c := testCenter(b, Options{Options: center.Options{Insecure: true, SweepInterval: time.Second}})
	keys := fillInstances(b, c, 100_000)
	conn := dialT(b, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	const per = 100
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(per) - per
				if i >= int64(b.N) {
					return
				}
				lo := int(i) % (len(keys) - per)
				if _, err := conn.Heartbeat(context.Background(), keys[lo:lo+per]...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "heartbeats/s")
}

// BenchmarkRegister measures registration latency (durable: fsync'd to
// bbolt before the reply) from one client, one request at a time, with
// 100K instances registered.
func BenchmarkRegister(b *testing.B) {
	c := testCenter(b, Options{Options: center.Options{Insecure: true, SweepInterval: time.Second}, DataDir: b.TempDir()})
	fillInstances(b, c, 100_000)
	conn := dialT(b, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := conn.Register(ctx, wire.Instance{Service: "bench", ID: fmt.Sprint(i), Address: "10.0.0.1", Port: 80, TTL: time.Hour}, registry.RegisterOptions{}); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkRegisterParallel: 64 concurrent registrations; group commit
// shares each fsync among them.
func BenchmarkRegisterParallel(b *testing.B) {
	c := testCenter(b, Options{Options: center.Options{Insecure: true, SweepInterval: time.Second}, DataDir: b.TempDir()})
	conn := dialT(b, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if _, err := conn.Register(context.Background(), wire.Instance{Service: "bench", ID: fmt.Sprint(i), TTL: time.Hour}, registry.RegisterOptions{}); err != nil {
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "registrations/s")
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(p(0.50), "p50-µs")
	b.ReportMetric(p(0.99), "p99-µs")
}

// BenchmarkSnapshot100K measures the time for a new subscriber to receive a
// 100K-instance snapshot (dial, subscribe, whole snapshot decoded).
func BenchmarkSnapshot100K(b *testing.B) {
	c := testCenter(b, Options{Options: center.Options{Insecure: true, SweepInterval: time.Second}})
	fillInstances(b, c, 100_000)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		conn, err := registry.Dial(ctx, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
		if err != nil {
			b.Fatal(err)
		}
		sub, err := conn.Subscribe(ctx, []string{"svc/"}, 0)
		if err != nil {
			b.Fatal(err)
		}
		batch, err := sub.Next(ctx)
		if err != nil || !batch.Snapshot || len(batch.Records) != 100_000 {
			b.Fatalf("snapshot of %d records: %v", len(batch.Records), err)
		}
		conn.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/snapshot")
}

// BenchmarkReplicationLag measures the time from a write acknowledged by one
// center to its arrival at a subscriber of the other.
func BenchmarkReplicationLag(b *testing.B) {
	pa, pb := newFaultProxy(b, ""), newFaultProxy(b, "")
	a := testCenter(b, Options{Options: center.Options{Insecure: true}, DataDir: b.TempDir(), Peer: pb.addr()})
	bc := testCenter(b, Options{Options: center.Options{Insecure: true}, DataDir: b.TempDir(), Peer: pa.addr()})
	pa.setTarget(a.Addr().String())
	pb.setTarget(bc.Addr().String())
	for !a.PeerConnected() || !bc.PeerConnected() {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	w := dialT(b, a.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	r := dialT(b, bc.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	sub, err := r.Subscribe(ctx, []string{"cfg/"}, 0)
	if err != nil {
		b.Fatal(err)
	}
	sub.Next(ctx)
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("cfg/%d", i)
		t0 := time.Now()
		if _, err := w.Put(ctx, key, []byte("v")); err != nil {
			b.Fatal(err)
		}
		for seen := false; !seen; {
			batch, err := sub.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, rec := range batch.Records {
				seen = seen || rec.Key == key
			}
		}
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

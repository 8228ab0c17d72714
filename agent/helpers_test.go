package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// testPair starts a mirrored pair of in-process centers with fast timings.
func testPair(t testing.TB) (a, b *pair.Center) {
	t.Helper()
	lnA := freeAddr(t)
	lnB := freeAddr(t)
	a = startCenter(t, pair.Options{Options: center.Options{Insecure: true, Listen: lnA}, Peer: lnB})
	b = startCenter(t, pair.Options{Options: center.Options{Insecure: true, Listen: lnB}, Peer: lnA})
	return a, b
}

// testPairMetrics is testPair with both centers' metrics on reg, labelled
// center="a" and center="b" (see counterSum).
func testPairMetrics(t testing.TB, reg prometheus.Registerer) (a, b *pair.Center) {
	t.Helper()
	lnA := freeAddr(t)
	lnB := freeAddr(t)
	on := func(name string) prometheus.Registerer {
		return prometheus.WrapRegistererWith(prometheus.Labels{"center": name}, reg)
	}
	a = startCenter(t, pair.Options{Options: center.Options{Insecure: true, Listen: lnA, Registerer: on("a")}, Peer: lnB})
	b = startCenter(t, pair.Options{Options: center.Options{Insecure: true, Listen: lnB, Registerer: on("b")}, Peer: lnA})
	return a, b
}

// counterSum is the sum of a metric over all its label values.
func counterSum(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func startCenter(t testing.TB, opts pair.Options) *pair.Center {
	t.Helper()
	opts.SweepInterval = 20 * time.Millisecond
	opts.TouchInterval = 50 * time.Millisecond
	opts.AntiEntropyInterval = 200 * time.Millisecond
	c, err := pair.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownCenter(t, c) })
	return c
}

func shutdownCenter(t testing.TB, c *pair.Center) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("center shutdown: %v", err)
	}
}

// freeAddr reserves a loopback port (listen, close) for a center that must
// know its peer's address before the peer starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	c, err := pair.New(pair.Options{Options: center.Options{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := c.Addr().String()
	c.Shutdown(context.Background())
	return addr
}

// testOptions returns options for an agent on a region in dir.
func testOptions(dir string, centers []string, prefixes ...string) Options {
	return Options{
		Centers:  centers,
		Region:   filepath.Join(dir, "region"),
		Shm:      shm.Options{Dir: dir, Size: 4 << 20},
		Prefixes: prefixes,
		RetryMin: 10 * time.Millisecond,
		RetryMax: 200 * time.Millisecond,
		Logger:   testLogger(),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("SHMREG_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func startAgent(t testing.TB, opts Options) *Agent {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAgent(t, a) })
	return a
}

func stopAgent(t testing.TB, a *Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("agent shutdown: %v", err)
	}
}

// regionContents reads every entry of a region. It is polled every few
// milliseconds (eventually), with a Reader opened and closed each time: a
// closed Reader's slots not in hand stay claimed for its read lease, so the
// lease is short here, or a slow run (the race detector) would hold all
// 1024 slots of the region's control file and the next open would fail.
func regionContents(t testing.TB, path string) map[string]string {
	t.Helper()
	r, err := shm.Open(path, shm.Options{ReadLease: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := make(map[string]string)
	if err := r.Scan(nil, func(k, v []byte) bool { out[string(k)] = string(v); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds or the (generous) bound passes.
func eventually(t testing.TB, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: still not true after 15s: %v", what, err)
}

// sameAs checks that a region holds exactly want.
func sameAs(t testing.TB, path string, want map[string]string) func() error {
	return func() error {
		got := regionContents(t, path)
		if len(got) != len(want) {
			return fmt.Errorf("region has %d entries, want %d", len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		return nil
	}
}

func instance(service, id string, port int) registry.Instance {
	return registry.Instance{Service: service, ID: id, Address: "127.0.0.1", Port: port, TTL: 2 * time.Second}
}

func mustEncode(t testing.TB, in registry.Instance) string {
	t.Helper()
	b, err := registry.EncodeInstance(in)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func dialAdmin(t testing.TB, addr string) *registry.Conn {
	t.Helper()
	c, err := registry.Dial(context.Background(), addr, registry.DialOptions{Role: registry.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

package registry

import (
	"context"
	"errors"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestClientRegistersThroughFailover(t *testing.T) {
	a, b, _, _ := startPair(t)
	ctx := tctx(t)
	cl := testClient(t, ClientOptions{Addrs: []string{a.Addr().String(), b.Addr().String()}, KeepAlive: 200 * time.Millisecond})
	in := inst("web", "1", 300*time.Millisecond)
	if err := cl.Register(ctx, in, RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if cl.Center() != a.ID() {
		t.Fatalf("client on %s, want the first address", cl.Center())
	}
	eventually(t, 2*time.Second, "registration replicated", func() bool { _, err := b.Get(in.Key()); return err == nil })
	// Heartbeats keep it alive on both centers for several TTLs.
	time.Sleep(time.Second)
	for _, c := range []*Center{a, b} {
		if _, err := c.Get(in.Key()); err != nil {
			t.Fatalf("instance expired on %s while heartbeating: %v", c.ID(), err)
		}
	}
	// Center a goes away: the client fails over to b and keeps the
	// instance alive there.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	a.Shutdown(sctx)
	cancel()
	eventually(t, 3*time.Second, "failover to b", func() bool { return cl.Center() == b.ID() })
	time.Sleep(time.Second)
	if _, err := b.Get(in.Key()); err != nil {
		t.Fatalf("instance lost after failover: %v", err)
	}
	// Key/values go through b now.
	if _, err := cl.Put(ctx, "cfg/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if r, err := cl.Get(ctx, "cfg/x"); err != nil || string(r.Value) != "1" {
		t.Fatalf("get after failover: %+v %v", r, err)
	}
	if err := cl.Deregister(ctx, "web", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(in.Key()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deregistered instance still there: %v", err)
	}
}

func TestClientReregistersForgottenInstance(t *testing.T) {
	c := testCenter(t, CenterOptions{Insecure: true})
	cl := testClient(t, ClientOptions{Addrs: []string{c.Addr().String()}})
	ctx := tctx(t)
	in := inst("web", "1", 300*time.Millisecond)
	if err := cl.Register(ctx, in, RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	// An operator (or a split-brain expiry) deletes it: the next heartbeat
	// learns the center no longer knows it and registers it again.
	admin := dialT(t, c.Addr().String(), DialOptions{Role: RoleAdmin})
	if _, err := admin.Delete(ctx, in.Key()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "re-registration", func() bool { _, err := c.Get(in.Key()); return err == nil })
}

func TestRegisterContextEndDeregisters(t *testing.T) {
	c := testCenter(t, CenterOptions{Insecure: true})
	cl := testClient(t, ClientOptions{Addrs: []string{c.Addr().String()}})
	ctx, cancel := context.WithCancel(context.Background())
	in := inst("web", "1", time.Minute)
	if err := cl.Register(ctx, in, RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, 2*time.Second, "deregistration on context end", func() bool { _, err := c.Get(in.Key()); return err != nil })
}

// TestReplacedRegistrationOutlivesOldContext: registering an instance again
// replaces the first registration; the end of the first one's context
// (which deregisters it, as below) must not delete the instance the second
// one now owns.
func TestReplacedRegistrationOutlivesOldContext(t *testing.T) {
	c := testCenter(t, CenterOptions{Insecure: true})
	cl := testClient(t, ClientOptions{Addrs: []string{c.Addr().String()}})
	ctx := tctx(t)
	in := inst("web", "1", time.Minute)
	if err := cl.Register(ctx, in, RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	cl.mu.Lock()
	first := cl.regs[in.Key()]
	cl.mu.Unlock()
	if err := cl.Register(ctx, in, RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	// What the first registration's goroutine does when its context ends.
	if err := cl.deregister(ctx, in.Key(), first); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(in.Key()); err != nil {
		t.Fatalf("the replaced registration's end deleted the instance: %v", err)
	}
}

// TestClientWritesKeepOrderAcrossFailover: a client writes a key on one
// center, fails over to the other, whose clock is 10 s behind, and writes
// the key again. The second write must carry the later version (or, once
// the pair's replication compares them, the first would win). Without the
// After the client sends, b would stamp it 10 s before the first.
func TestClientWritesKeepOrderAcrossFailover(t *testing.T) {
	a, err := NewCenter(CenterOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := NewCenter(CenterOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	b.clock = newHLC(func() time.Time { return time.Now().Add(-10 * time.Second) })
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := tctx(t)
	t.Cleanup(func() { a.Shutdown(ctx); b.Shutdown(ctx) })
	cl := testClient(t, ClientOptions{Addrs: []string{a.Addr().String(), b.Addr().String()}, Role: RoleAdmin})
	v1, err := cl.Put(ctx, "cfg/order", []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	a.Shutdown(ctx)
	v2, err := cl.Put(ctx, "cfg/order", []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if v1.Origin != a.ID() || v2.Origin != b.ID() {
		t.Fatalf("writes went to %s then %s, want a (%s) then b (%s)", v1.Origin, v2.Origin, a.ID(), b.ID())
	}
	if !v1.Less(v2) {
		t.Fatalf("the later write's version %v orders before the earlier one's %v", v2, v1)
	}
}

// TestCenterIgnoresFarFutureAfter: a write whose After is far ahead of the
// center's clock does not drag the clock (and later versions) forward.
func TestCenterIgnoresFarFutureAfter(t *testing.T) {
	c := testCenter(t, CenterOptions{Insecure: true})
	conn := dialT(t, c.Addr().String(), DialOptions{Role: RoleAdmin})
	ctx := tctx(t)
	future := uint64(time.Now().Add(24*time.Hour).UnixMilli()) << wire.HLCLogicalBits
	conn.seen.Store(future)
	v, err := conn.Put(ctx, "cfg/x", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if v.HLC >= future || v.Time().After(time.Now().Add(time.Minute)) {
		t.Fatalf("version %v (%v) followed a client's far-future After", v, v.Time())
	}
	if _, err := conn.Put(ctx, "cfg/x", []byte("2")); err != nil {
		t.Fatal(err)
	}
	var m dto.Metric
	if err := c.metrics.clockRefused.WithLabelValues("client").Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 2 {
		t.Fatalf(`clock_refused_total{source="client"} = %v, want 2`, n)
	}
}

func TestClientSubscriptionFailsOverWithSnapshot(t *testing.T) {
	a, b, _, _ := startPair(t)
	ctx := tctx(t)
	cl := testClient(t, ClientOptions{Addrs: []string{a.Addr().String(), b.Addr().String()}, Role: RoleAgent})
	if _, err := cl.Put(ctx, "cfg/1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "replicated", func() bool { _, err := b.Get("cfg/1"); return err == nil })
	sub, err := cl.Subscribe(ctx, []string{"cfg/"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := sub.Next(ctx)
	if err != nil || !first.Snapshot || first.CenterID != a.ID() || keysOf(first.Records) != "cfg/1" {
		t.Fatalf("first %+v %v", first, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	a.Shutdown(sctx)
	cancel()
	next, err := sub.Next(ctx)
	if err != nil || !next.Snapshot || next.CenterID != b.ID() || keysOf(next.Records) != "cfg/1" {
		t.Fatalf("after failover %+v %v", next, err)
	}
}

// TestClientReportsARefusalAsSuch: a center that answers and refuses the
// token is not "unavailable"; the client returns the refusal itself.
func TestClientReportsARefusalAsSuch(t *testing.T) {
	c := testCenter(t, CenterOptions{Token: "t"})
	cl := testClient(t, ClientOptions{Addrs: []string{c.Addr().String()}, Role: RoleAdmin, Token: "wrong"})
	_, err := cl.Put(tctx(t), "cfg/a", []byte("1"))
	if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("put with a wrong token: %v; want ErrUnauthorized and not ErrUnavailable", err)
	}
}

// testClient makes a Client closed at the end of the test.
func testClient(t *testing.T, opts ClientOptions) *Client {
	t.Helper()
	cl, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

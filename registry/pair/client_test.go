package pair

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

func TestClientRegistersThroughFailover(t *testing.T) {
	a, b, _, _ := startPair(t)
	ctx := tctx(t)
	cl := testClient(t, registry.ClientOptions{Addrs: []string{a.Addr().String(), b.Addr().String()}, KeepAlive: 200 * time.Millisecond})
	in := inst("web", "1", 300*time.Millisecond)
	if err := cl.Register(ctx, in, registry.RegisterOptions{}); err != nil {
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
	if _, err := b.Get(in.Key()); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("deregistered instance still there: %v", err)
	}
}

func TestClientReregistersForgottenInstance(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	cl := testClient(t, registry.ClientOptions{Addrs: []string{c.Addr().String()}})
	ctx := tctx(t)
	in := inst("web", "1", 300*time.Millisecond)
	if err := cl.Register(ctx, in, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	// An operator (or a split-brain expiry) deletes it: the next heartbeat
	// learns the center no longer knows it and registers it again.
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	if _, err := admin.Delete(ctx, in.Key()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "re-registration", func() bool { _, err := c.Get(in.Key()); return err == nil })
}

func TestRegisterContextEndDeregisters(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	cl := testClient(t, registry.ClientOptions{Addrs: []string{c.Addr().String()}})
	ctx, cancel := context.WithCancel(context.Background())
	in := inst("web", "1", time.Minute)
	if err := cl.Register(ctx, in, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, 2*time.Second, "deregistration on context end", func() bool { _, err := c.Get(in.Key()); return err != nil })
}

// TestClientWritesKeepOrderAcrossFailover: a client writes a key on one
// center, fails over to the other, whose clock is 10 s behind, and writes
// the key again. The second write must carry the later version (or, once
// the pair's replication compares them, the first would win). Without the
// After the client sends, b would stamp it 10 s before the first.
func TestClientWritesKeepOrderAcrossFailover(t *testing.T) {
	a, err := New(Options{Options: center.Options{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Options: center.Options{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	b.backend.clock = newHLC(func() time.Time { return time.Now().Add(-10 * time.Second) })
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := tctx(t)
	t.Cleanup(func() { a.Shutdown(ctx); b.Shutdown(ctx) })
	cl := testClient(t, registry.ClientOptions{Addrs: []string{a.Addr().String(), b.Addr().String()}, Role: wire.RoleAdmin})
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
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	future := uint64(time.Now().Add(24*time.Hour).UnixMilli()) << wire.HLCLogicalBits
	v := rawWrite(t, c.Addr().String(), wire.MsgPut, &wire.PutMsg{Key: "cfg/x", Value: []byte("1"), After: future}).Version
	if v.HLC >= future || v.Time().After(time.Now().Add(time.Minute)) {
		t.Fatalf("version %v (%v) followed a client's far-future After", v, v.Time())
	}
	rawWrite(t, c.Addr().String(), wire.MsgPut, &wire.PutMsg{Key: "cfg/x", Value: []byte("2"), After: future})
	if n := metric(t, c, "clock_refused_total", "source", "client"); n != 2 {
		t.Fatalf(`clock_refused_total{source="client"} = %v, want 2`, n)
	}
}

func TestClientSubscriptionFailsOverWithSnapshot(t *testing.T) {
	a, b, _, _ := startPair(t)
	ctx := tctx(t)
	cl := testClient(t, registry.ClientOptions{Addrs: []string{a.Addr().String(), b.Addr().String()}, Role: wire.RoleAgent})
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
	c := testCenter(t, Options{Options: center.Options{Token: "t"}})
	cl := testClient(t, registry.ClientOptions{Addrs: []string{c.Addr().String()}, Role: wire.RoleAdmin, Token: "wrong"})
	_, err := cl.Put(tctx(t), "cfg/a", []byte("1"))
	if !errors.Is(err, wire.ErrUnauthorized) || errors.Is(err, wire.ErrUnavailable) {
		t.Fatalf("put with a wrong token: %v; want wire.ErrUnauthorized and not wire.ErrUnavailable", err)
	}
}

// testClient makes a Client closed at the end of the test.

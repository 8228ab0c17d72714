package pair

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

func inst(service, id string, ttl time.Duration) wire.Instance {
	return wire.Instance{Service: service, ID: id, Address: "10.0.0.1", Port: 8080, TTL: ttl}
}

func TestMissedTTLExpiresInstance(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	conn := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	ctx := tctx(t)
	sub, err := conn.Subscribe(ctx, []string{"svc/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := sub.Next(ctx); err != nil || !b.Snapshot || len(b.Records) != 0 {
		t.Fatalf("first batch %+v %v", b, err)
	}
	alive, dead := inst("web", "alive", 200*time.Millisecond), inst("web", "dead", 200*time.Millisecond)
	for _, in := range []wire.Instance{alive, dead} {
		if _, err := conn.Register(ctx, in, registry.RegisterOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Heartbeat only "alive" for well over its TTL.
	stop := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(stop) {
		if missing, err := conn.Heartbeat(ctx, alive.Key()); err != nil || len(missing) != 0 {
			t.Fatalf("heartbeat: %v %v", missing, err)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if _, err := c.Get(alive.Key()); err != nil {
		t.Fatalf("heartbeating instance expired: %v", err)
	}
	if _, err := c.Get(dead.Key()); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("silent instance still there: %v", err)
	}
	// Subscribers saw the registration and the expiry as a delete.
	seenDelete := false
	for !seenDelete {
		b, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			if r.Key == dead.Key() && r.Deleted {
				seenDelete = true
			}
		}
	}
	if got := metric(t, c, "expiries_total"); got != 1 {
		t.Fatalf("expiries metric %v, want 1", got)
	}
	// A heartbeat for the expired instance reports it missing.
	if missing, err := conn.Heartbeat(ctx, dead.Key()); err != nil || len(missing) != 1 {
		t.Fatalf("heartbeat of expired: %v %v", missing, err)
	}
}

func TestTiedInstanceExpiresWithItsConnection(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, DisconnectGrace: 100 * time.Millisecond}})
	ctx := tctx(t)
	conn, err := registry.Dial(ctx, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	if err != nil {
		t.Fatal(err)
	}
	tied, loose := inst("db", "tied", time.Hour), inst("db", "loose", time.Hour)
	if _, err := conn.Register(ctx, tied, registry.RegisterOptions{TieToConn: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Register(ctx, loose, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	eventually(t, 2*time.Second, "tied instance expiry", func() bool { _, err := c.Get(tied.Key()); return err != nil })
	if _, err := c.Get(loose.Key()); err != nil {
		t.Fatalf("untied instance expired with the connection: %v", err)
	}
}

func TestSelfPreservationHoldsMassExpiry(t *testing.T) {
	// The hold lasts long enough (2 s) for the test to see it on a loaded
	// machine under the race detector; 400 ms could pass before the first
	// look.
	c := testCenter(t, Options{Options: center.Options{Insecure: true, SelfPreservation: 0.5, SelfPreservationMin: 3, SelfPreservationMaxHold: 2 * time.Second}})
	conn := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	ctx := tctx(t)
	ttl := 150 * time.Millisecond
	for i := range 4 {
		if _, err := conn.Register(ctx, inst("api", fmt.Sprint(i), ttl), registry.RegisterOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	lone := inst("cron", "only", ttl)
	if _, err := conn.Register(ctx, lone, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	// All four api instances stop at once: suspect, held. The lone cron
	// instance is below SelfPreservationMin and expires normally.
	eventually(t, 5*time.Second, "lone instance expiry", func() bool { _, err := c.Get(lone.Key()); return err != nil })
	eventually(t, 5*time.Second, "hold recorded", func() bool { return metric(t, c, "self_preservation_held") == 4 })
	if n := len(c.List("svc/api/")); n != 4 {
		t.Fatalf("%d api instances left while held, want 4", n)
	}
	if metric(t, c, "self_preservation_events_total") != 1 {
		t.Fatalf("holds metric %v", metric(t, c, "self_preservation_events_total"))
	}
	// After the maximum hold they expire anyway.
	eventually(t, 8*time.Second, "held instances expire after max hold", func() bool { return len(c.List("svc/api/")) == 0 })
}

func TestRestartedCenterWaitsOneTTL(t *testing.T) {
	dir := t.TempDir()
	ttl := 400 * time.Millisecond
	c1, err := New(Options{Options: center.Options{Insecure: true, SweepInterval: 20 * time.Millisecond}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := dialT(t, c1.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	in := inst("web", "1", ttl)
	if _, err := conn.Register(tctx(t), in, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl) // down for longer than the TTL
	c2 := testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: dir})
	start := time.Now()
	if _, err := c2.Get(in.Key()); err != nil {
		t.Fatalf("instance expired at once on restart: %v", err)
	}
	eventually(t, 3*time.Second, "expiry one TTL after restart", func() bool { _, err := c2.Get(in.Key()); return err != nil })
	if waited := time.Since(start); waited < ttl-50*time.Millisecond {
		t.Fatalf("expired %v after restart, before one TTL (%v)", waited, ttl)
	}
}

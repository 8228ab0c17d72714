package pair

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// A prefix with NUL matches no key (no key may contain NUL) and once could
// forge another prefix set's group and snapshot keys ({"app/\x00cfg/"} and
// {"cfg/", "app/"} were both "app/\x00cfg/"): it is refused, and the keys
// quote each prefix.
func TestPrefixSetKeyCollision(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	ctx := tctx(t)
	odd := dialT(t, c.Addr().String(), registry.DialOptions{})
	if _, err := odd.Subscribe(ctx, []string{"app/\x00cfg/"}, 0); !errors.Is(err, wire.ErrInvalid) {
		t.Fatalf("a prefix with NUL: %v, want ErrInvalid", err)
	}
	if err := odd.Ping(ctx); err != nil {
		t.Fatalf("the connection should survive a refused subscription: %v", err)
	}
}

// Unsubscribe does not end the subscription's push goroutine: it waits for
// the connection to close (pre-existing, not from this change).
func TestUnsubscribeLeavesPushLoop(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	ctx := tctx(t)
	conn := dialT(t, c.Addr().String(), registry.DialOptions{})
	warm, _ := conn.Subscribe(ctx, []string{"x/"}, 0)
	nextT(t, warm)
	warm.Close(ctx)
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 200 {
		s, err := conn.Subscribe(ctx, []string{"cfg/"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		nextT(t, s)
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+50 {
		t.Fatalf("goroutines %d -> %d after 200 subscribe/unsubscribe on one connection", before, after)
	}
}

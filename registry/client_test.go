package registry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

// TestReplacedRegistrationOutlivesOldContext: registering an instance again
// replaces the first registration; the end of the first one's context
// (which deregisters it, as below) must not delete the instance the second
// one now owns.
func TestReplacedRegistrationOutlivesOldContext(t *testing.T) {
	c, err := pair.New(pair.Options{Options: center.Options{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	cl, err := registry.NewClient(registry.ClientOptions{Addrs: []string{c.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	in := registry.Instance{Service: "web", ID: "1", Address: "10.0.0.1", Port: 80, TTL: time.Minute}
	if err := cl.Register(ctx, in, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	first := cl.Registration(in.Key())
	if err := cl.Register(ctx, in, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	// What the first registration's goroutine does when its context ends.
	if err := cl.DeregisterAs(ctx, in.Key(), first); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(in.Key()); err != nil {
		t.Fatalf("the replaced registration's end deleted the instance: %v", err)
	}
}

// TestCleanShutdownDeregisters: the shutdown path of a service (the
// example in examples/go): register under a context, then end the context
// and Close the client at once, or Close it while the registration is
// still live. The instance must be gone from the center as soon as Close
// returns, not after its TTL. Each way is repeated 200 times: a race lost
// one time in two, or one in a hundred, shows up. The TTL is short so that
// the heartbeat loop re-registers (the first heartbeat on a new connection
// re-registers every instance) while Close deregisters.
func TestCleanShutdownDeregisters(t *testing.T) {
	c, err := pair.New(pair.Options{Options: center.Options{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	for _, way := range []struct {
		name     string
		shutdown func(cancelReg context.CancelFunc, cl *registry.Client) error
	}{
		{"cancel then Close", func(cancelReg context.CancelFunc, cl *registry.Client) error {
			cancelReg()
			return cl.Close()
		}},
		{"Close alone", func(_ context.CancelFunc, cl *registry.Client) error {
			return cl.Close()
		}},
		{"cancel, a moment, then Close", func(cancelReg context.CancelFunc, cl *registry.Client) error {
			cancelReg()
			time.Sleep(50 * time.Microsecond) // the deregistration is on the wire
			return cl.Close()
		}},
	} {
		ghosts := 0
		for i := range 200 {
			cl, err := registry.NewClient(registry.ClientOptions{Addrs: []string{c.Addr().String()}})
			if err != nil {
				t.Fatal(err)
			}
			in := registry.Instance{Service: "orders-client", ID: fmt.Sprint(i), Address: "10.0.0.1", Port: 80, TTL: 300 * time.Millisecond}
			rctx, rcancel := context.WithCancel(ctx)
			if err := cl.Register(rctx, in, registry.RegisterOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := way.shutdown(rcancel, cl); err != nil {
				t.Errorf("%s, round %d: Close: %v", way.name, i, err)
			}
			rcancel()
			if _, err := c.Get(in.Key()); !errors.Is(err, registry.ErrNotFound) {
				ghosts++
			}
		}
		if ghosts > 0 {
			t.Errorf("%s: the instance outlived a clean shutdown in %d of 200 rounds", way.name, ghosts)
		}
	}

	// The signal may also come while Register waits for the center's
	// answer, which the center sends after making the registration
	// durable: Register fails, and the instance must not stay behind.
	ghosts, interrupted := 0, 0
	for i := range 200 {
		cl, err := registry.NewClient(registry.ClientOptions{Addrs: []string{c.Addr().String()}})
		if err != nil {
			t.Fatal(err)
		}
		in := registry.Instance{Service: "interrupted", ID: fmt.Sprint(i), Address: "10.0.0.1", Port: 80, TTL: time.Minute}
		rctx, rcancel := context.WithCancel(ctx)
		time.AfterFunc(time.Duration(i%40)*25*time.Microsecond, rcancel)
		if err := cl.Register(rctx, in, registry.RegisterOptions{}); err != nil {
			interrupted++
		}
		rcancel()
		if err := cl.Close(); err != nil {
			t.Errorf("interrupted Register, round %d: Close: %v", i, err)
		}
		if _, err := c.Get(in.Key()); !errors.Is(err, registry.ErrNotFound) {
			ghosts++
		}
	}
	t.Logf("%d of 200 Registers interrupted", interrupted)
	if ghosts > 0 {
		t.Errorf("interrupted Register: the instance stayed in %d of 200 rounds", ghosts)
	}
}

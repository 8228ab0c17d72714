package registry_test

import (
	"context"
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

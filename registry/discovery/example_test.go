package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/discovery"
	"github.com/shmreg/shmreg/shm"
	"github.com/vmihailenco/msgpack/v5"
)

// exampleRegion stands in for the agent: it creates a region in a
// temporary directory holding two instances of "orders" and returns the
// writer, the region's path and a cleanup function.
func exampleRegion() (*shm.Writer, string, func()) {
	dir, err := os.MkdirTemp("", "shmreg-example")
	if err != nil {
		panic(err)
	}
	path := filepath.Join(dir, "region")
	w, err := shm.OpenWriter(path, shm.Options{Size: 4 << 20})
	if err != nil {
		panic(err)
	}
	for i, id := range []string{"orders-1", "orders-2"} {
		b, _ := registry.EncodeInstance(registry.Instance{Service: "orders", ID: id, Address: "10.0.0.1", Port: 8080 + i})
		_ = w.Put([]byte(registry.InstanceKey("orders", id)), b)
	}
	return w, path, func() { w.Close(); os.RemoveAll(dir) }
}

func ExampleOpen() {
	_, path, cleanup := exampleRegion()
	defer cleanup()

	// In production: discovery.Open("registry", discovery.Options{}), the
	// region the host's agent writes under /dev/shm/shmreg.
	cat, err := discovery.Open(path, discovery.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cat.Close()
	ins, _ := cat.Instances("orders")
	fmt.Println(len(ins), "instances")
	// Output: 2 instances
}

func ExampleNew() {
	_, path, cleanup := exampleRegion()
	defer cleanup()

	r, err := shm.Open(path, shm.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	cat := discovery.New(r, discovery.Options{})
	defer cat.Close()
	v, _ := cat.Reader().Get([]byte(registry.InstanceKey("orders", "orders-1")))
	in, _ := registry.DecodeInstance(v)
	fmt.Println(in.Address, in.Port)
	// Output: 10.0.0.1 8080
}

func ExampleCatalog_Instances() {
	_, path, cleanup := exampleRegion()
	defer cleanup()
	cat, _ := discovery.Open(path, discovery.Options{})
	defer cat.Close()

	// The slice is shared and cached: read it, do not modify it.
	ins, err := cat.Instances("orders")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, in := range ins {
		fmt.Printf("%s %s:%d %s\n", in.ID, in.Address, in.Port, in.Health)
	}
	// Output:
	// orders-1 10.0.0.1:8080 passing
	// orders-2 10.0.0.1:8081 passing
}

func ExampleCatalog_Picker() {
	_, path, cleanup := exampleRegion()
	defer cleanup()
	cat, _ := discovery.Open(path, discovery.Options{})
	defer cat.Close()

	rr, _ := cat.Picker("orders", discovery.PickerOptions{})
	a, _ := rr.Pick("")
	b, _ := rr.Pick("")
	fmt.Println("round robin:", a.ID, b.ID)

	ch, _ := cat.Picker("orders", discovery.PickerOptions{Strategy: discovery.ConsistentHash})
	first, _ := ch.Pick("user-42")
	again, _ := ch.Pick("user-42")
	fmt.Println("same instance for the same key:", first.ID == again.ID)
	// Output:
	// round robin: orders-1 orders-2
	// same instance for the same key: true
}

func ExampleCatalog_Watch() {
	w, path, cleanup := exampleRegion()
	defer cleanup()
	cat, _ := discovery.Open(path, discovery.Options{})
	defer cat.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := cat.Watch(ctx, "svc/orders/")
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = w.Delete([]byte(registry.InstanceKey("orders", "orders-2"))) // the agent applies a deregistration
	for _, c := range (<-events).Changes {
		fmt.Println(c.Key, "deleted:", c.Deleted)
	}
	// Output: svc/orders/orders-2 deleted: true
}

func ExampleCatalog_GetInto() {
	w, path, cleanup := exampleRegion()
	defer cleanup()
	cat, _ := discovery.Open(path, discovery.Options{})
	defer cat.Close()

	// An older producer wrote the limits without the "burst" field.
	old, _ := msgpack.Marshal(map[string]any{"qps": 100})
	_ = w.Put([]byte("config/limits"), old)

	var limits struct {
		QPS   int `msgpack:"qps"`
		Burst int `msgpack:"burst"`
	}
	err := cat.GetInto("config/limits", &limits)
	fmt.Println(limits.QPS, errors.Is(err, discovery.ErrStale))
	// Output: 100 true
}

func ExampleCatalog_Refresh() {
	_, path, cleanup := exampleRegion()
	defer cleanup()
	// Without Options.AgentSocket there is no agent to ask.
	cat, _ := discovery.Open(path, discovery.Options{})
	defer cat.Close()
	err := cat.Refresh(context.Background(), "config/limits")
	fmt.Println(errors.Is(err, discovery.ErrNoAgent))
	// Output: true
}

func ExampleCatalog_GetFreshInto() {
	w, path, cleanup := exampleRegion()
	defer cleanup()
	// Options.AgentSocket names the agent's control socket; here there is
	// none, so the stale value is returned with the reason it stayed stale.
	cat, _ := discovery.Open(path, discovery.Options{})
	defer cat.Close()

	old, _ := msgpack.Marshal(map[string]any{"qps": 100})
	_ = w.Put([]byte("config/limits"), old)

	var limits struct {
		QPS   int `msgpack:"qps"`
		Burst int `msgpack:"burst"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := cat.GetFreshInto(ctx, "config/limits", &limits)
	fmt.Println(limits.QPS, errors.Is(err, discovery.ErrStale), errors.Is(err, discovery.ErrNoAgent))
	// Output: 100 true true
}

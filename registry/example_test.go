package registry_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

func ExampleConn_Subscribe() {
	ctx := context.Background()
	c, _ := pair.New(pair.Options{Options: center.Options{Insecure: true}})
	c.Start(ctx)
	defer c.Shutdown(ctx)

	conn, err := registry.Dial(ctx, c.Addr().String(), registry.DialOptions{Role: registry.RoleAgent})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	conn.Put(ctx, "cfg/feature", []byte("on"))
	sub, _ := conn.Subscribe(ctx, []string{"cfg/", "svc/web/"}, 0)
	snap, _ := sub.Next(ctx) // the snapshot
	fmt.Println(snap.Snapshot, len(snap.Records), string(snap.Records[0].Value))
	conn.Register(ctx, registry.Instance{Service: "web", ID: "1", Address: "10.0.0.1", Port: 80}, registry.RegisterOptions{})
	change, _ := sub.Next(ctx) // then changes
	in, _ := registry.DecodeInstance(change.Records[0].Value)
	fmt.Println(change.Snapshot, change.Records[0].Key, in.Address, in.Health)
	// Output:
	// true 1 on
	// false svc/web/1 10.0.0.1 passing
}

func ExampleClient_Register() {
	ctx := context.Background()
	c, _ := pair.New(pair.Options{Options: center.Options{Insecure: true}})
	c.Start(ctx)
	defer c.Shutdown(ctx)

	// Give both centers of the pair; the client fails over between them.
	cl, err := registry.NewClient(registry.ClientOptions{Addrs: []string{c.Addr().String()}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	in := registry.Instance{Service: "api", ID: "a1", Address: "10.0.0.2", Port: 9000, TTL: 5 * time.Second}
	if err := cl.Register(ctx, in, registry.RegisterOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	recs, _ := cl.List(ctx, "svc/api/")
	fmt.Println(len(recs), recs[0].Key)
	cl.Deregister(ctx, "api", "a1")
	// Output: 1 svc/api/a1
}

func ExampleEncodeInstance() {
	b, _ := registry.EncodeInstance(registry.Instance{Service: "web", ID: "1", Address: "10.0.0.1", Port: 80})
	in, _ := registry.DecodeInstance(b)
	fmt.Println(registry.InstanceKey(in.Service, in.ID), in.Weight, in.TTL)
	svc, id, ok := registry.ParseInstanceKey("svc/web/1")
	fmt.Println(svc, id, ok)
	// Output:
	// svc/web/1 1 10s
	// web 1 true
}

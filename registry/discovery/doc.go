// Package discovery is what a calling service uses to find the services it
// calls: the instances of a service, a picker that chooses one per request,
// change notifications for a key prefix, and typed values that notice when
// they were written under an older schema. Everything is served from the
// host's shared-memory region (see package shm) through an *shm.Reader: a
// lookup makes no system call and, on the hot path, allocates nothing.
//
// A Catalog wraps one reader:
//
//	cat, err := discovery.Open("registry", discovery.Options{})
//	ins, err := cat.Instances("orders")           // healthy instances, cached
//	p := cat.Picker("orders", discovery.PickerOptions{Strategy: discovery.ConsistentHash})
//	in, err := p.Pick("user-42")                 // same instance while the set is stable
//	events, err := cat.Watch(ctx, "config/")     // one futex waiter fans out to every watcher
//	err = cat.GetInto("config/limits", &limits)  // ErrStale if written by an older producer
//
// The gRPC-Go resolver lives in the sub-package grpcresolver, so that
// programs which do not use gRPC do not link it.
package discovery

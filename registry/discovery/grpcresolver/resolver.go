// Package grpcresolver is a gRPC-Go resolver that serves a service's
// addresses from the host's shared-memory region, through a
// discovery.Catalog. It is a package of its own so that programs that do
// not use gRPC do not link it.
//
//	b := grpcresolver.NewBuilder(catalog, grpcresolver.Options{})
//	conn, err := grpc.NewClient("shmreg:///orders",
//		grpc.WithResolvers(b),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The resolver sends the service's healthy instances (see
// discovery.Catalog.Instances) as endpoints, and sends them again whenever
// they change in the region: it watches the service's key prefix, so a
// change reaches the ClientConn within the region's wake-up latency. Any of
// gRPC's balancers works over them (pick_first, the default; round_robin;
// ring_hash through the service config).
package grpcresolver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc/resolver"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/discovery"
)

// Scheme is the target scheme the builder serves: shmreg:///<service>.
const Scheme = "shmreg"

// Options configure a Builder. The zero value is usable.
type Options struct {
	// ServiceConfig, if set, is a JSON service config sent with every
	// address update (for example
	// {"loadBalancingConfig":[{"ring_hash_experimental":{}}]}). Default: none,
	// so the ClientConn's default service config applies.
	ServiceConfig string
}

// Builder builds resolvers for shmreg:///<service> targets. Register it
// with grpc.WithResolvers (per connection) or resolver.Register (process
// wide, the caller's choice). One builder, and one catalog, serve any
// number of connections.
type Builder struct {
	cat  *discovery.Catalog
	opts Options
}

// NewBuilder returns a builder serving targets from cat. cat must stay
// open while connections built from it are in use.
func NewBuilder(cat *discovery.Catalog, opts Options) *Builder {
	return &Builder{cat: cat, opts: opts}
}

// Scheme returns "shmreg".
func (b *Builder) Scheme() string { return Scheme }

// Build starts resolving target's service: the target's path without its
// leading slash (shmreg:///orders, or shmreg:orders).
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := strings.TrimPrefix(target.Endpoint(), "/")
	if service == "" || strings.Contains(service, "/") {
		return nil, fmt.Errorf("grpcresolver: target %q: want %s:///<service>", target.String(), Scheme)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events, err := b.cat.Watch(ctx, registry.InstancePrefix+service+"/")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("grpcresolver: %s: %w", service, err)
	}
	r := &shmResolver{b: b, service: service, cc: cc, cancel: cancel, now: make(chan struct{}, 1)}
	r.update() // the first state before Build returns
	r.wg.Add(1)
	go r.run(ctx, events)
	return r, nil
}

// shmResolver follows one service.
type shmResolver struct {
	b       *Builder
	service string
	cc      resolver.ClientConn
	cancel  context.CancelFunc
	now     chan struct{} // ResolveNow requests, capacity 1
	wg      sync.WaitGroup
	last    []resolver.Endpoint // owned by whoever calls update (Build, then run)
}

func (r *shmResolver) run(ctx context.Context, events <-chan discovery.Event) {
	defer r.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-r.now:
		}
		r.update()
	}
}

// update reads the service's instances and pushes them if they changed.
// An empty set is reported as an error rather than pushed: gRPC keeps
// using the addresses it has (an empty push is more often a glitch than a
// service that really has gone; see Nacos' push-empty protection).
func (r *shmResolver) update() {
	ins, err := r.b.cat.Instances(r.service)
	if err != nil {
		r.cc.ReportError(fmt.Errorf("grpcresolver: %s: %w", r.service, err))
		return
	}
	if len(ins) == 0 {
		r.last = nil
		r.cc.ReportError(fmt.Errorf("grpcresolver: %s: %w", r.service, discovery.ErrNoInstances))
		return
	}
	eps := make([]resolver.Endpoint, 0, len(ins))
	for _, in := range ins {
		addr := net.JoinHostPort(in.Address, strconv.Itoa(in.Port))
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}}})
	}
	if slices.EqualFunc(eps, r.last, func(a, b resolver.Endpoint) bool { return a.Addresses[0].Addr == b.Addresses[0].Addr }) {
		return
	}
	r.last = eps
	state := resolver.State{Endpoints: eps}
	if r.b.opts.ServiceConfig != "" {
		state.ServiceConfig = r.cc.ParseServiceConfig(r.b.opts.ServiceConfig)
	}
	if err := r.cc.UpdateState(state); err != nil {
		// The balancer refused the state (for example a bad service
		// config); the next change or ResolveNow tries again.
		r.last = nil
	}
}

// ResolveNow makes the resolver re-read the region (gRPC calls it after
// connection failures).
func (r *shmResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

// Close stops following the service.
func (r *shmResolver) Close() {
	r.cancel()
	r.wg.Wait()
}

package discovery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/shmreg/shmreg/registry"
)

// Strategy is how a Picker chooses an instance.
type Strategy int

// Strategies.
const (
	// RoundRobin cycles through the instances in key order; the key passed
	// to Pick is ignored.
	RoundRobin Strategy = iota
	// WeightedRandom picks an instance at random with probability
	// proportional to its Weight (a weight below 1 counts as 1, the SDK's
	// default); the key is ignored.
	WeightedRandom
	// ConsistentHash maps the key passed to Pick onto a hash ring of
	// virtual nodes, placed by the instance's id (so an instance keeps its
	// place when its address or other instances change). An instance of the
	// median weight gets PickerOptions.Replicas virtual nodes, others
	// proportionally to their Weight (rounded, at least 1, at most 16 times
	// Replicas; below 1 counts as 1), so a weight-2 instance takes about
	// twice the keys of a weight-1 one. A key maps to the same instance while
	// the set of instances is stable, and adding or removing one of N
	// equal-weight instances moves only about 1/N of the keys, all to or
	// from that instance.
	ConsistentHash
	// LeastLoaded picks the instance with the lowest load figure, read as a
	// decimal number from its metadata under PickerOptions.LoadKey (default
	// "load"), cycling among instances that share the lowest figure. An
	// instance without a parsable figure ranks after every instance that has
	// one (it may just have started and not reported yet); if none has one,
	// LeastLoaded behaves as RoundRobin. The key is ignored.
	LeastLoaded
)

func (s Strategy) String() string {
	switch s {
	case RoundRobin:
		return "round-robin"
	case WeightedRandom:
		return "weighted-random"
	case ConsistentHash:
		return "consistent-hash"
	case LeastLoaded:
		return "least-loaded"
	}
	return "strategy(" + strconv.Itoa(int(s)) + ")"
}

// Defaults of PickerOptions.
const (
	// DefaultReplicas is the number of virtual nodes of a median-weight
	// instance on a consistent-hash ring: enough that, over 10 equal
	// instances, the busiest takes under 1.2 times the mean share of keys.
	DefaultReplicas = 256
	// DefaultLoadKey is the metadata key LeastLoaded reads.
	DefaultLoadKey = "load"
)

// PickerOptions configure a Picker. The zero value is a round-robin picker
// over healthy instances.
type PickerOptions struct {
	// Strategy. Default RoundRobin.
	Strategy Strategy
	// Replicas is the number of virtual nodes of a median-weight instance
	// for ConsistentHash (others get them in proportion to their weight).
	// Default DefaultReplicas.
	Replicas int
	// LoadKey is the metadata key holding an instance's load for
	// LeastLoaded. Default DefaultLoadKey.
	LoadKey string
	// IncludeUnhealthy picks among every instance (AllInstances) rather than
	// the healthy ones. Default false.
	IncludeUnhealthy bool
}

// Picker chooses one instance of a service per request. It follows the
// service's instances as they change in the region; its derived state (the
// hash ring, the cumulative weights, the least-loaded set) is rebuilt only
// when they do. A Picker is safe for concurrent use.
type Picker struct {
	c     *Catalog
	sc    *serviceCache
	opts  PickerOptions
	state atomic.Pointer[pickState]
	mu    sync.Mutex    // serialises rebuilds of state
	next  atomic.Uint32 // round-robin cursor (32 bits: the modulo is cheaper)
}

// pickState is what a strategy needs, derived from one instance set.
type pickState struct {
	version uint64
	ins     []registry.Instance
	cum     []uint64 // WeightedRandom: running sums of weights
	ring    ring     // ConsistentHash
	least   []int    // LeastLoaded: indices sharing the lowest load
}

// Picker returns a picker over service's instances.
func (c *Catalog) Picker(service string, opts PickerOptions) (*Picker, error) {
	if opts.Strategy < RoundRobin || opts.Strategy > LeastLoaded {
		return nil, fmt.Errorf("%w: unknown picker strategy %d", registry.ErrInvalid, opts.Strategy)
	}
	if opts.Replicas <= 0 {
		opts.Replicas = DefaultReplicas
	}
	if opts.LoadKey == "" {
		opts.LoadKey = DefaultLoadKey
	}
	sc, err := c.service(service)
	if err != nil {
		return nil, err
	}
	return &Picker{c: c, sc: sc, opts: opts}, nil
}

// Pick returns one instance. key matters only to ConsistentHash (a user
// id, a session, a shard key); other strategies ignore it. With no
// instance to pick it returns ErrNoInstances. The returned instance's
// Metadata map is shared: do not modify it.
func (p *Picker) Pick(key string) (registry.Instance, error) {
	st, err := p.current()
	if err != nil {
		return registry.Instance{}, err
	}
	n := len(st.ins)
	if n == 0 {
		return registry.Instance{}, fmt.Errorf("%w: service %s", ErrNoInstances, p.sc.name)
	}
	switch p.opts.Strategy {
	case WeightedRandom:
		return st.ins[pickWeighted(st.cum)], nil
	case ConsistentHash:
		return st.ins[st.ring.lookup(key)], nil
	case LeastLoaded:
		return st.ins[st.least[(p.next.Add(1)-1)%uint32(len(st.least))]], nil
	}
	return st.ins[(p.next.Add(1)-1)%uint32(n)], nil
}

// current returns the state for the service's current instances.
func (p *Picker) current() (*pickState, error) {
	set, err := p.sc.current(p.c)
	if err != nil {
		return nil, err
	}
	if st := p.state.Load(); st != nil && st.version == set.version {
		return st, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.state.Load(); st != nil && st.version == set.version {
		return st, nil
	}
	st := p.build(set)
	p.state.Store(st)
	return st, nil
}

func (p *Picker) build(set *instanceSet) *pickState {
	st := &pickState{version: set.version, ins: set.healthy}
	if p.opts.IncludeUnhealthy {
		st.ins = set.all
	}
	switch p.opts.Strategy {
	case WeightedRandom:
		st.cum = cumulativeWeights(st.ins)
	case ConsistentHash:
		st.ring = newRing(st.ins, p.opts.Replicas)
	case LeastLoaded:
		st.least = leastLoaded(st.ins, p.opts.LoadKey)
	}
	return st
}

func cumulativeWeights(ins []registry.Instance) []uint64 {
	cum := make([]uint64, len(ins))
	var total uint64
	for i, in := range ins {
		total += uint64(max(in.Weight, 1))
		cum[i] = total
	}
	return cum
}

// pickWeighted draws an index with probability proportional to its weight.
func pickWeighted(cum []uint64) int {
	r := rand.Uint64N(cum[len(cum)-1])
	lo, hi := 0, len(cum)-1
	for lo < hi { // first i with cum[i] > r
		mid := int(uint(lo+hi) >> 1)
		if cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// leastLoaded returns the indices of the instances sharing the lowest load;
// all indices when no instance reports one.
func leastLoaded(ins []registry.Instance, key string) []int {
	best := math.Inf(1)
	var least []int
	for i, in := range ins {
		l, err := strconv.ParseFloat(in.Metadata[key], 64)
		if err != nil || math.IsNaN(l) {
			continue
		}
		switch {
		case l < best:
			best, least = l, append(least[:0], i)
		case l == best:
			least = append(least, i)
		}
	}
	if len(least) == 0 {
		least = make([]int, len(ins))
		for i := range least {
			least[i] = i
		}
	}
	return least
}

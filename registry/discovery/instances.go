package discovery

import (
	"bytes"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/shmreg/shmreg/registry"
)

// Instances returns the healthy instances of service, in key (id) order:
// those whose health is passing, or warning unless
// Options.WarningIsUnhealthy (an entry without a health field counts as
// passing). A service with no healthy instance yields an empty slice and no
// error. Values under svc/<service>/ that do not decode as instances are
// skipped (and logged when first seen).
//
// The slice is shared by every caller and cached until the service's
// entries change: callers must not modify it, nor the instances' Metadata
// maps. A call on an unchanged region costs one atomic load of the region's
// change sequence and one map lookup; after a commit elsewhere in the region
// the service's keys are re-scanned and compared byte by byte, and only
// changed entries are decoded again.
func (c *Catalog) Instances(service string) ([]registry.Instance, error) {
	s, err := c.instanceSet(service)
	if err != nil {
		return nil, err
	}
	return s.healthy, nil
}

// AllInstances is Instances without the health filter: every decodable
// instance of service, critical ones included. The same sharing rules apply.
func (c *Catalog) AllInstances(service string) ([]registry.Instance, error) {
	s, err := c.instanceSet(service)
	if err != nil {
		return nil, err
	}
	return s.all, nil
}

func (c *Catalog) instanceSet(service string) (*instanceSet, error) {
	sc, err := c.service(service)
	if err != nil {
		return nil, err
	}
	return sc.current(c)
}

// service returns the cache of one service, creating it on first use.
func (c *Catalog) service(name string) (*serviceCache, error) {
	if sc := (*c.services.Load())[name]; sc != nil {
		return sc, nil
	}
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%w: service name %q (empty or with '/')", registry.ErrInvalid, name)
	}
	c.servicesMu.Lock()
	defer c.servicesMu.Unlock()
	old := *c.services.Load()
	if sc := old[name]; sc != nil {
		return sc, nil
	}
	m := make(map[string]*serviceCache, len(old)+1)
	maps.Copy(m, old)
	sc := &serviceCache{name: name, prefix: []byte(registry.InstancePrefix + name + "/")}
	m[name] = sc
	c.services.Store(&m)
	return sc, nil
}

// serviceCache holds the decoded instances of one service. Readers load the
// current set with one atomic load; rebuilds are serialised by mu and
// publish a new set (sets are immutable once published, except for their
// checked sequence).
type serviceCache struct {
	name   string
	prefix []byte // svc/<name>/
	mu     sync.Mutex
	cur    atomic.Pointer[instanceSet]
}

// instanceSet is one decoded state of a service.
type instanceSet struct {
	// checked is the region's change sequence at which the set was last
	// found to match the region. Equal to the current sequence means no
	// commit happened since, so the set is still exact.
	checked atomic.Uint32
	// version counts the changes of the decoded set (1 for the first set).
	// Pickers rebuild their state when it moves.
	version uint64
	entries []entry // every key under the prefix, in key order
	all     []registry.Instance
	healthy []registry.Instance
}

// entry is one key under the service's prefix as last seen: its raw value
// (compared against the region on a re-scan) and its decoding.
type entry struct {
	key, raw []byte
	in       registry.Instance
	ok       bool // raw decoded as an instance of this service
}

// current returns the service's set, re-scanning if the region changed.
// The change sequence lives in the region's control file, which survives
// the region being rebuilt into a new data file; the data file's generation
// does not move for a reader still on the superseded file, so it cannot
// serve as the cache check.
func (sc *serviceCache) current(c *Catalog) (*instanceSet, error) {
	if c.shut.Load() {
		return nil, ErrClosed
	}
	if s := sc.cur.Load(); s != nil && s.checked.Load() == c.r.Seq() {
		return s, nil
	}
	return sc.rescan(c)
}

// rescan compares the region's entries under the prefix with the cached
// ones and publishes a new set if they differ. The sequence is read before
// the scan, so a commit racing with the scan leaves the set marked with an
// older sequence and the next call scans again.
func (sc *serviceCache) rescan(c *Catalog) (*instanceSet, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	seq := c.r.Seq()
	old := sc.cur.Load()
	if old != nil && old.checked.Load() == seq {
		return old, nil
	}
	var prev []entry
	var version uint64
	if old != nil {
		prev, version = old.entries, old.version
	}
	// While the scan matches prev entry by entry nothing is copied; at the
	// first difference the matched prefix is copied into fresh and every
	// later entry is looked up in prev, reusing its decoding if unchanged.
	var fresh []entry
	n, changed := 0, false
	err := c.r.Scan(sc.prefix, func(k, v []byte) bool {
		if !changed {
			if n < len(prev) && bytes.Equal(k, prev[n].key) && bytes.Equal(v, prev[n].raw) {
				n++
				return true
			}
			changed = true
			fresh = append(make([]entry, 0, len(prev)+1), prev[:n]...)
		}
		fresh = append(fresh, sc.entryFor(c, k, v, prev))
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: instances of %s: %w", sc.name, err)
	}
	if !changed {
		if old != nil && n == len(prev) {
			old.checked.Store(seq)
			return old, nil
		}
		fresh = prev[:n] // only deletions at the end
	}
	s := &instanceSet{version: version + 1, entries: fresh}
	s.checked.Store(seq)
	for i := range fresh {
		if !fresh[i].ok {
			continue
		}
		s.all = append(s.all, fresh[i].in)
		if healthy(fresh[i].in.Health, c.opts.WarningIsUnhealthy) {
			s.healthy = append(s.healthy, fresh[i].in)
		}
	}
	sc.cur.Store(s)
	return s, nil
}

// entryFor returns the entry for k/v (slices valid only during the scan),
// reusing prev's decoding when prev holds the same bytes.
func (sc *serviceCache) entryFor(c *Catalog, k, v []byte, prev []entry) entry {
	i := sort.Search(len(prev), func(i int) bool { return bytes.Compare(prev[i].key, k) >= 0 })
	if i < len(prev) && bytes.Equal(prev[i].key, k) && bytes.Equal(prev[i].raw, v) {
		return prev[i]
	}
	e := entry{key: bytes.Clone(k), raw: bytes.Clone(v)}
	service, id, ok := registry.ParseInstanceKey(string(k))
	if !ok || service != sc.name {
		c.opts.Logger.Warn("discovery: key under a service prefix is not an instance key", "key", string(k))
		return e
	}
	in, err := registry.DecodeInstance(e.raw)
	switch {
	case err != nil:
		c.opts.Logger.Warn("discovery: undecodable instance skipped", "key", string(k), "err", err)
	case in.Service != service || in.ID != id:
		c.opts.Logger.Warn("discovery: instance value does not match its key, skipped", "key", string(k), "service", in.Service, "id", in.ID)
	default:
		e.in, e.ok = in, true
	}
	return e
}

// healthy reports whether an instance in health h should receive traffic.
func healthy(h registry.Health, warningIsUnhealthy bool) bool {
	switch h {
	case registry.HealthPassing, "":
		return true
	case registry.HealthWarning:
		return !warningIsUnhealthy
	}
	return false
}

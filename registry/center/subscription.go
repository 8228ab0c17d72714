package center

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// A subscriber receives, in revision order, every change under its prefixes
// after the revision of its initial batch. Its queue holds batches: change
// batches (records appended as they are committed) and snapshot batches
// (when prefixes are added), so the consumer sees them in commit order.
type subscriber struct {
	prefixes   []string // guarded by Center.subMu
	maxBacklog int

	mu       sync.Mutex
	queue    []*pushBatch
	backlog  int
	overflow bool
	notify   chan struct{} // capacity 1: "the queue is not empty"
}

// pushBatch is one unit of delivery.
type pushBatch struct {
	snapshot bool
	prefixes []string // snapshot: the prefixes it replaces
	recs     []*wire.Record
	rev      uint64
}

func newSubscriber(prefixes []string, maxBacklog int) *subscriber {
	return &subscriber{prefixes: prefixes, maxBacklog: maxBacklog, notify: make(chan struct{}, 1)}
}

// offer queues the changes under the subscriber's prefixes. Called with
// Center.subMu held.
func (s *subscriber) offer(changes []Change) {
	s.mu.Lock()
	added := false
	for _, ch := range changes {
		if ch.Rec == nil || !hasAnyPrefix(ch.Key, s.prefixes) {
			continue
		}
		var b *pushBatch
		if n := len(s.queue); n > 0 && !s.queue[n-1].snapshot {
			b = s.queue[n-1]
		} else {
			b = &pushBatch{}
			s.queue = append(s.queue, b)
		}
		b.recs = append(b.recs, ch.Rec)
		b.rev = ch.Rec.Rev
		s.backlog++
		added = true
	}
	if s.backlog > s.maxBacklog {
		s.overflow = true
	}
	s.mu.Unlock()
	if added {
		s.signal()
	}
}

func (s *subscriber) push(b *pushBatch) {
	s.mu.Lock()
	s.queue = append(s.queue, b)
	s.mu.Unlock()
	s.signal()
}

func (s *subscriber) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// take returns the queued batches; overflow reports that the subscriber fell
// more than maxBacklog changes behind (it must be dropped).
func (s *subscriber) take() (batches []*pushBatch, overflow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	batches, s.queue, s.backlog = s.queue, nil, 0
	return batches, s.overflow
}

// Publish makes a durable batch visible: it queues the changes for every
// subscriber under their prefixes and updates the leases. The backend
// calls it in commit order with its records locked (see Backend).
func (c *Center) Publish(changes []Change, rev uint64) {
	c.subMu.Lock()
	for s := range c.subs {
		s.offer(changes)
	}
	c.subMu.Unlock()

	now := time.Now()
	for _, ch := range changes {
		if ch.Rec == nil {
			continue
		}
		c.metrics.writes.Inc()
		if !ch.Rec.IsInstance() {
			continue
		}
		if ch.Rec.Deleted || !c.backend.Judges(ch.Rec) {
			c.live.remove(ch.Key)
		} else {
			c.live.upsert(ch.Rec, ch.ConnID, now)
		}
	}
}

// subscribe registers a subscriber and queues its initial batch: the changes
// since fromRev if the backend can still tell them, else a snapshot of the
// live records under the prefixes.
func (c *Center) subscribe(prefixes []string, fromRev uint64) *subscriber {
	s := newSubscriber(prefixes, c.opts.MaxBacklog)
	c.backend.Read(func(v View) {
		b := &pushBatch{rev: v.Rev()}
		if fromRev > 0 && v.CanResume(fromRev) {
			v.Scan(func(r *wire.Record) bool {
				if r.Rev > fromRev && hasAnyPrefix(r.Key, prefixes) {
					b.recs = append(b.recs, r)
				}
				return true
			})
			sort.Slice(b.recs, func(i, j int) bool { return b.recs[i].Rev < b.recs[j].Rev })
		} else {
			b.snapshot, b.prefixes = true, prefixes
			b.recs = c.liveUnder(v, prefixes)
		}
		s.queue = append(s.queue, b)
		c.subMu.Lock()
		c.subs[s] = struct{}{}
		c.subMu.Unlock()
	})
	s.signal()
	return s
}

// addPrefixes extends a subscription and queues a snapshot of the new
// prefixes, ordered after every change already queued.
func (c *Center) addPrefixes(s *subscriber, prefixes []string) {
	c.backend.Read(func(v View) {
		c.subMu.Lock()
		s.prefixes = append(append([]string(nil), s.prefixes...), prefixes...)
		c.subMu.Unlock()
		s.push(&pushBatch{snapshot: true, prefixes: prefixes, recs: c.liveUnder(v, prefixes), rev: v.Rev()})
	})
}

func (c *Center) unsubscribe(s *subscriber) {
	c.subMu.Lock()
	delete(c.subs, s)
	c.subMu.Unlock()
}

// snapshotCache keeps the snapshots taken at one revision, by prefix set,
// so that subscriptions to the same prefixes at the same revision (a fill
// storm: every agent of a fleet reconnecting at once) share one scan and
// one slice instead of a scan and a copy each.
type snapshotCache struct {
	mu   sync.Mutex
	rev  uint64
	byPS map[string][]*wire.Record
}

// maxSharedSnapshots bounds the distinct prefix sets kept for one revision.
const maxSharedSnapshots = 64

func (sc *snapshotCache) init() { sc.byPS = make(map[string][]*wire.Record) }

// liveUnder returns the live records under any of prefixes, sorted by key,
// from view v. The result is shared and must never be modified.
func (c *Center) liveUnder(v View, prefixes []string) []*wire.Record {
	sc := &c.snaps
	key := strings.Join(prefixes, "\x00")
	rev := v.Rev()
	sc.mu.Lock()
	if sc.rev != rev {
		clear(sc.byPS)
		sc.rev = rev
	}
	recs, ok := sc.byPS[key]
	sc.mu.Unlock()
	if ok {
		return recs
	}
	out := make([]*wire.Record, 0)
	v.Scan(func(r *wire.Record) bool {
		if !r.Deleted && hasAnyPrefix(r.Key, prefixes) {
			out = append(out, r)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	out = out[:len(out):len(out)]
	sc.mu.Lock()
	if sc.rev == rev && len(sc.byPS) < maxSharedSnapshots {
		sc.byPS[key] = out
	}
	sc.mu.Unlock()
	return out
}

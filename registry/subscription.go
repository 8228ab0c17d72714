package registry

import (
	"sort"
	"strings"
	"sync"
)

// A subscriber receives, in revision order, every change under its prefixes
// after the revision of its initial batch. Its queue holds batches: change
// batches (records appended as they are committed) and snapshot batches
// (when prefixes are added), so the consumer sees them in commit order.
type subscriber struct {
	prefixes    []string // guarded by Center.mu
	excludePeer bool     // skip changes that came from the peer (the replicator)
	maxBacklog  int

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
	recs     []*Record
	rev      uint64
}

func newSubscriber(prefixes []string, excludePeer bool, maxBacklog int) *subscriber {
	return &subscriber{prefixes: prefixes, excludePeer: excludePeer, maxBacklog: maxBacklog, notify: make(chan struct{}, 1)}
}

// offer queues the effects under the subscriber's prefixes. Called with
// Center.mu held for writing.
func (s *subscriber) offer(effects []effect) {
	s.mu.Lock()
	added := false
	for _, e := range effects {
		if e.rec == nil || (s.excludePeer && e.fromPeer) || !hasAnyPrefix(e.key, s.prefixes) {
			continue
		}
		var b *pushBatch
		if n := len(s.queue); n > 0 && !s.queue[n-1].snapshot {
			b = s.queue[n-1]
		} else {
			b = &pushBatch{}
			s.queue = append(s.queue, b)
		}
		b.recs = append(b.recs, e.rec)
		b.rev = e.rec.Rev
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

// subscribe registers a subscriber and queues its initial batch: the changes
// since fromRev if this center can still produce them (fromRev is not older
// than the last purged tombstone and not in the future), else a snapshot of
// the live records under the prefixes.
func (c *Center) subscribe(prefixes []string, fromRev uint64, excludePeer bool) *subscriber {
	s := newSubscriber(prefixes, excludePeer, c.opts.MaxBacklog)
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &pushBatch{rev: c.rev}
	if fromRev > 0 && fromRev >= c.compactedRev && fromRev <= c.rev {
		for k, r := range c.recs {
			if r.Rev > fromRev && hasAnyPrefix(k, prefixes) {
				b.recs = append(b.recs, r)
			}
		}
		sort.Slice(b.recs, func(i, j int) bool { return b.recs[i].Rev < b.recs[j].Rev })
	} else {
		b.snapshot, b.prefixes = true, prefixes
		b.recs = c.liveUnder(prefixes)
	}
	s.queue = append(s.queue, b)
	s.signal()
	c.subs[s] = struct{}{}
	return s
}

// subscribeQuiet registers a subscriber with no initial batch (the
// replicator, which repairs the past by anti-entropy).
func (c *Center) subscribeQuiet(prefixes []string, excludePeer bool) *subscriber {
	s := newSubscriber(prefixes, excludePeer, c.opts.MaxBacklog)
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s
}

// addPrefixes extends a subscription and queues a snapshot of the new
// prefixes, ordered after every change already queued.
func (c *Center) addPrefixes(s *subscriber, prefixes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.prefixes = append(append([]string(nil), s.prefixes...), prefixes...)
	s.push(&pushBatch{snapshot: true, prefixes: prefixes, recs: c.liveUnder(prefixes), rev: c.rev})
}

func (c *Center) unsubscribe(s *subscriber) {
	c.mu.Lock()
	delete(c.subs, s)
	c.mu.Unlock()
}

// liveUnder returns the live records under any of prefixes, sorted by key.
// Called with mu held for writing. The result is shared: subscriptions to
// the same prefixes at the same revision (a fill storm: every agent of a
// fleet reconnecting at once) get the same slice instead of a scan and a
// copy each, so it must never be modified.
func (c *Center) liveUnder(prefixes []string) []*Record {
	if c.snapsRev != c.rev {
		clear(c.snaps)
		c.snapsRev = c.rev
	}
	key := strings.Join(prefixes, "\x00")
	if recs, ok := c.snaps[key]; ok {
		return recs
	}
	out := make([]*Record, 0)
	for k, r := range c.recs {
		if !r.Deleted && hasAnyPrefix(k, prefixes) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	out = out[:len(out):len(out)]
	if len(c.snaps) < maxSharedSnapshots {
		c.snaps[key] = out
	}
	return out
}

// maxSharedSnapshots bounds the distinct prefix sets whose snapshot at the
// current revision is kept for sharing.
const maxSharedSnapshots = 64

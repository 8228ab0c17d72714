package center

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// Fan-out: how a committed change reaches thousands of subscribers.
//
// Subscribers with the same prefixes form a group. Publish, called by the
// backend with its records locked, only appends the batch to the fan-out
// queue and updates leases; the fan-out goroutine then, for each group,
// picks the batch's changes under the group's prefixes once, encodes the
// push once (wire.SharedPush) and queues the same bytes, between a few
// bytes of the subscriber's own, on the connection of every member. No
// goroutine per subscriber wakes up, nothing is encoded per subscriber,
// and the work grows with the groups and the changes, not the subscribers
// times the changes (the socket writes remain one per connection).
//
// A subscriber starts in catch-up: its initial batch (a snapshot, or the
// changes since the revision it resumes from) and the changes that arrive
// meanwhile wait in its own queue, which its push goroutine sends at the
// pace of the connection. Once that queue is empty the subscriber is live,
// and the fan-out writes to its connection directly. Adding prefixes puts it
// back in catch-up behind a snapshot of them, and so does a connection with
// half of MaxConnQueue waiting to be written. A subscriber more than
// MaxBacklog changes behind, or whose connection makes no progress for the
// write timeout, is cut off; it resumes by revision when it reconnects (and
// gets a fresh snapshot if that revision is gone).

// group is the subscribers with one set of prefixes.
type group struct {
	key      string
	prefixes []string
	members  map[*subscriber]struct{}
	recs     []*wire.Record // scratch of fanOut: this round's changes for the group
}

// A subscriber receives, in revision order, every change under its prefixes
// after the revision of its initial batch.
type subscriber struct {
	id    uint64 // the client's sub_id
	tail  []byte // wire.PushTail(id): its own end of every push
	sess  *session
	group *group // guarded by Center.subMu

	maxBacklog int

	mu       sync.Mutex
	fromRev  uint64 // changes at or below it are in the initial batch
	live     bool   // the queue is empty and the fan-out writes directly
	queue    []*pushBatch
	backlog  int
	overflow bool
	closed   bool
	notify   chan struct{} // capacity 1: "the queue is not empty"
}

// pushBatch is one unit of delivery of the catch-up queue.
type pushBatch struct {
	snapshot bool
	prefixes []string // snapshot: the prefixes it replaces
	recs     []*wire.Record
	rev      uint64
	shared   *sharedSnapshot // snapshot: its encoding, shared with others
}

func (s *subscriber) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// take returns the queued batches, or, with none queued, makes the
// subscriber live; overflow reports that it fell more than maxBacklog
// changes behind (it must be dropped).
func (s *subscriber) take() (batches []*pushBatch, overflow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 && !s.overflow {
		s.live = true
	}
	batches, s.queue, s.backlog = s.queue, nil, 0
	return batches, s.overflow
}

// deliver hands a subscriber the changes of its group after a commit: recs
// under its prefixes in revision order, and shared, their encoding (nil if
// made by encode for the first subscriber that needs it).
func (s *subscriber) deliver(recs []*wire.Record, encode func() []*wire.SharedPush) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if recs[0].Rev <= s.fromRev {
		// Published before this subscriber's initial batch was taken:
		// keep only what came after it (the shared encoding does not fit).
		i := sort.Search(len(recs), func(i int) bool { return recs[i].Rev > s.fromRev })
		if i == len(recs) {
			return
		}
		recs, encode = recs[i:], nil
	}
	if s.live && s.sess.out.Queued() > s.sess.c.opts.MaxConnQueue/2 {
		// Behind: back to catch-up, at the pace of the connection, until
		// the queue is empty again (or it falls MaxBacklog changes behind).
		s.live = false
	}
	if !s.live {
		s.queue = append(s.queue, &pushBatch{recs: recs, rev: recs[len(recs)-1].Rev})
		s.backlog += len(recs)
		if s.backlog > s.maxBacklog {
			// Cut it off now (its push goroutine may be waiting for room
			// that never comes); it resumes by revision when it returns.
			s.overflow, s.closed = true, true
			s.sess.cutOff(fmt.Errorf("%w: subscriber %d fell more than %d changes behind", wire.ErrOverloaded, s.id, s.maxBacklog))
			return
		}
		s.signal()
		return
	}
	var pushes []*wire.SharedPush
	if encode != nil {
		pushes = encode()
	} else {
		pushes = s.sess.c.encodeChanges(recs)
	}
	for _, p := range pushes {
		s.sess.c.metrics.pushes.Inc()
		s.sess.c.metrics.pushedRecords.Add(float64(p.Records))
		if err := s.sess.out.EnqueueParts(p.Head, p.Body, s.tail); err != nil {
			s.closed = true
			if err == wire.ErrOverloaded {
				s.sess.cutOff(fmt.Errorf("%w: subscriber %d does not read its pushes (more than %d bytes queued)", wire.ErrOverloaded, s.id, s.sess.c.opts.MaxConnQueue))
			}
			return
		}
	}
}

// fanout is the queue between Publish and the fan-out goroutine.
type fanout struct {
	mu      sync.Mutex
	pending []pubBatch
	wake    chan struct{} // capacity 1
	// round is held while published batches are delivered, so that
	// addPrefixes can deliver what is pending before it takes a snapshot.
	round sync.Mutex
}

type pubBatch struct {
	changes []Change
	rev     uint64
}

// Publish makes a durable batch visible: it queues the batch for the
// fan-out and updates the leases. The backend calls it in commit order with
// its records locked (see Backend).
func (c *Center) Publish(changes []Change, rev uint64) {
	c.fan.mu.Lock()
	c.fan.pending = append(c.fan.pending, pubBatch{changes: changes, rev: rev})
	c.fan.mu.Unlock()
	select {
	case c.fan.wake <- struct{}{}:
	default:
	}

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

// fanoutLoop delivers published batches to the groups, gathering for
// PushDelay after the first so that a burst goes out in one push.
func (c *Center) fanoutLoop() {
	delay := c.opts.PushDelay
	janitor := time.NewTicker(snapshotReuse)
	defer janitor.Stop()
	for {
		select {
		case <-c.fan.wake:
		case now := <-janitor.C:
			c.snaps.expire(now)
			continue
		case <-c.ctx.Done():
			return
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-c.ctx.Done():
				return
			}
		}
		c.deliverPending()
	}
}

// deliverPending delivers the batches published so far.
func (c *Center) deliverPending() {
	c.fan.round.Lock()
	defer c.fan.round.Unlock()
	c.fan.mu.Lock()
	batches := c.fan.pending
	c.fan.pending = nil
	c.fan.mu.Unlock()
	if len(batches) > 0 {
		c.fanOut(batches)
	}
}

func (c *Center) fanOut(batches []pubBatch) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	// Each change goes to the groups of the prefixes it falls under (the
	// index), in revision order; then each group that got some delivers
	// them to its members.
	var touched []*group
	seen := make(map[*group]bool)
	for _, b := range batches {
		for _, ch := range b.changes {
			if ch.Rec == nil {
				continue
			}
			clear(seen)
			c.index.match(ch.Key, seen, func(g *group) {
				if len(g.recs) == 0 {
					touched = append(touched, g)
				}
				g.recs = append(g.recs, ch.Rec)
			})
		}
	}
	for _, g := range touched {
		recs := g.recs
		g.recs = nil
		var shared []*wire.SharedPush
		encode := func() []*wire.SharedPush {
			if shared == nil {
				shared = c.encodeChanges(recs)
			}
			return shared
		}
		for s := range g.members {
			s.deliver(recs, encode)
		}
	}
}

// encodeChanges encodes a change batch as pushes (several if it exceeds
// half a frame), for any subscriber.
func (c *Center) encodeChanges(recs []*wire.Record) []*wire.SharedPush {
	return c.encodePushes(recs, false, nil, recs[len(recs)-1].Rev)
}

func (c *Center) encodePushes(recs []*wire.Record, snapshot bool, prefixes []string, rev uint64) []*wire.SharedPush {
	chunks := wire.ChunkRecords(recs, c.opts.MaxFrame/2)
	out := make([]*wire.SharedPush, len(chunks))
	for i, ch := range chunks {
		out[i] = c.encodePush(ch, snapshot, i == 0, prefixes, rev, i < len(chunks)-1)
	}
	return out
}

// encodePush encodes one frame of a batch (the first carries a snapshot's
// prefixes; all but the last have more set).
func (c *Center) encodePush(recs []*wire.Record, snapshot, first bool, prefixes []string, rev uint64, more bool) *wire.SharedPush {
	m := &wire.PushOut{Snapshot: snapshot, Records: recs, Rev: rev, More: more, CenterID: c.ID()}
	if first {
		m.Prefixes = prefixes
	}
	c.metrics.pushEncodes.Inc()
	p, err := wire.EncodeSharedPush(m)
	if err != nil {
		// Records that were stored cannot fail to encode; if they did,
		// losing a push silently would be worse than this.
		panic("registry: encode push: " + err.Error())
	}
	return p
}

// subscribe registers a subscriber and queues its initial batch: the changes
// since fromRev if the backend can still tell them, else a snapshot of the
// live records under the prefixes.
func (c *Center) subscribe(sess *session, id uint64, prefixes []string, fromRev uint64) *subscriber {
	s := &subscriber{id: id, tail: wire.PushTail(id), sess: sess, maxBacklog: c.opts.MaxBacklog, notify: make(chan struct{}, 1)}
	c.backend.Read(func(v View) {
		if fromRev > 0 && v.CanResume(fromRev) {
			b := &pushBatch{rev: v.Rev()} // sent even if empty: it says where the subscriber is
			v.Scan(func(r *wire.Record) bool {
				if r.Rev > fromRev && hasAnyPrefix(r.Key, prefixes) {
					b.recs = append(b.recs, r)
				}
				return true
			})
			sort.Slice(b.recs, func(i, j int) bool { return b.recs[i].Rev < b.recs[j].Rev })
			s.queue = append(s.queue, b)
		} else {
			sn, delta := c.snapshot(v, prefixes, false)
			s.queue = append(s.queue, &pushBatch{snapshot: true, prefixes: prefixes, recs: sn.recs, rev: sn.rev, shared: sn.take()})
			if len(delta) > 0 {
				s.queue = append(s.queue, &pushBatch{recs: delta, rev: delta[len(delta)-1].Rev})
			}
		}
		s.fromRev = v.Rev()
		c.subMu.Lock()
		c.join(s, prefixes)
		c.subMu.Unlock()
	})
	s.signal()
	return s
}

// join puts s in the group of prefixes. Called with subMu held.
func (c *Center) join(s *subscriber, prefixes []string) {
	key := prefixSetKey(prefixes)
	g := c.groups[key]
	if g == nil {
		g = &group{key: key, prefixes: prefixes, members: make(map[*subscriber]struct{})}
		c.groups[key] = g
		c.index.add(g)
	}
	g.members[s] = struct{}{}
	s.group = g
}

// leave takes s out of its group. Called with subMu held.
func (c *Center) leave(s *subscriber) {
	g := s.group
	if g == nil {
		return
	}
	delete(g.members, s)
	if len(g.members) == 0 {
		delete(c.groups, g.key)
		c.index.remove(g)
	}
	s.group = nil
}

// prefixSetKey names a set of prefixes: the same for the same set in any
// order, different for different sets (each prefix is quoted, so no
// separator can be forged).
func prefixSetKey(prefixes []string) string {
	ps := make([]string, len(prefixes))
	for i, p := range prefixes {
		ps[i] = strconv.Quote(p)
	}
	sort.Strings(ps)
	return strings.Join(ps, ",")
}

// addPrefixes extends a subscription and queues a snapshot of the new
// prefixes, ordered after every change already queued or sent.
func (c *Center) addPrefixes(s *subscriber, prefixes []string) {
	c.backend.Read(func(v View) {
		// Nothing is published while the view is held: deliver what was
		// (to the subscriber's old prefixes), so that every change up to
		// the snapshot's revision is queued before it and none after.
		c.deliverPending()
		c.subMu.Lock()
		defer c.subMu.Unlock()
		all := append(append([]string(nil), s.group.prefixes...), prefixes...)
		c.leave(s)
		c.join(s, all)
		sn, delta := c.snapshot(v, prefixes, true)
		s.mu.Lock()
		s.live = false
		s.queue = append(s.queue, &pushBatch{snapshot: true, prefixes: prefixes, recs: sn.recs, rev: sn.rev, shared: sn.take()})
		if len(delta) > 0 {
			s.queue = append(s.queue, &pushBatch{recs: delta, rev: delta[len(delta)-1].Rev})
		}
		s.mu.Unlock()
		s.signal()
	})
}

func (c *Center) unsubscribe(s *subscriber) {
	c.subMu.Lock()
	c.leave(s)
	c.subMu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal() // its push goroutine ends
}

// prefixCount is the number of prefixes of a subscription.
func (c *Center) prefixCount(s *subscriber) int {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if s.group == nil {
		return 0
	}
	return len(s.group.prefixes)
}

// sharedSnapshot is the snapshot of one prefix set at one revision, shared
// by every subscription that takes it (a fill storm: every agent of a fleet
// reconnecting at once): one scan, one sorted slice, and each frame encoded
// once, by the first taker that sends it. While the snapshot can still be
// handed out (open: in the cache, younger than snapshotReuse) its frames
// are kept for the takers to come; once it is closed, a frame is kept only
// until every taker has sent it (a taker arriving late would encode a
// dropped frame again).
type sharedSnapshot struct {
	recs     []*wire.Record
	prefixes []string
	rev      uint64
	taken    time.Time

	mu     sync.Mutex
	chunks [][]*wire.Record
	frames []*wire.SharedPush
	sent   []int // takers that have sent each frame
	takers int
	closed bool // no new takers: frames go once their takers have sent them
}

// close stops handing the snapshot out: frames every taker has sent go.
func (sn *sharedSnapshot) close() {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.closed = true
	for i := range sn.frames {
		if sn.sent[i] >= sn.takers {
			sn.frames[i] = nil
		}
	}
}

// take counts one more subscriber that will send this snapshot.
func (sn *sharedSnapshot) take() *sharedSnapshot {
	sn.mu.Lock()
	sn.takers++
	sn.mu.Unlock()
	return sn
}

// frameCount is the number of frames of the snapshot.
func (sn *sharedSnapshot) frameCount(c *Center) int {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.chunks == nil {
		sn.chunks = wire.ChunkRecords(sn.recs, c.opts.MaxFrame/2)
		sn.frames = make([]*wire.SharedPush, len(sn.chunks))
		sn.sent = make([]int, len(sn.chunks))
	}
	return len(sn.chunks)
}

// frame returns frame i (after frameCount), encoding it if nobody has yet.
func (sn *sharedSnapshot) frame(c *Center, i int) *wire.SharedPush {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.frames[i] == nil {
		sn.frames[i] = c.encodePush(sn.chunks[i], true, i == 0, sn.prefixes, sn.rev, i < len(sn.chunks)-1)
	}
	return sn.frames[i]
}

// abandon records that one taker will not send frames from on (it left):
// they are dropped once the others have sent them.
func (sn *sharedSnapshot) abandon(from int) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.chunks == nil {
		sn.takers-- // it never began: nothing counts it
		return
	}
	for i := from; i < len(sn.sent); i++ {
		if sn.sent[i]++; sn.closed && sn.sent[i] >= sn.takers {
			sn.frames[i] = nil
		}
	}
}

// sentFrame records that one taker has queued frame i; the last drops it.
func (sn *sharedSnapshot) sentFrame(i int) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.sent[i]++; sn.closed && sn.sent[i] >= sn.takers {
		sn.frames[i] = nil
	}
}

// snapshotCache keeps the latest snapshot of each prefix set, so that a
// subscription shortly after another takes the same snapshot and only the
// changes since (a fill storm while writes go on: every subscription sees
// a different revision, yet they share one snapshot).
type snapshotCache struct {
	mu   sync.Mutex
	byPS map[string]*sharedSnapshot
}

const (
	// maxSharedSnapshots bounds the prefix sets kept.
	maxSharedSnapshots = 64
	// snapshotReuse is how long a snapshot is handed out again (with the
	// changes since it): past that a fresh one is cheaper than the delta.
	snapshotReuse = 2 * time.Second
)

func (sc *snapshotCache) init() { sc.byPS = make(map[string]*sharedSnapshot) }

// snapshot returns a snapshot of the live records under any of prefixes,
// sorted by key, as of view v: a shared one (whose records must never be
// modified), perhaps taken at an earlier revision, and then delta, the
// changes under the prefixes since that revision, in revision order.
//
// Only a new subscription may start from an earlier revision: one that adds
// prefixes has seen later changes, possibly of the same keys (prefixes may
// overlap), and must not see them go back, so it gets a fresh snapshot
// (fresh reports that).
func (c *Center) snapshot(v View, prefixes []string, fresh bool) (sn *sharedSnapshot, delta []*wire.Record) {
	sc := &c.snaps
	key := prefixSetKey(prefixes)
	rev := v.Rev()
	sc.mu.Lock()
	sn = sc.byPS[key]
	sc.mu.Unlock()
	if sn != nil && (sn.rev == rev || !fresh && sn.rev < rev && time.Since(sn.taken) < snapshotReuse && v.CanResume(sn.rev)) {
		if sn.rev < rev {
			v.Scan(func(r *wire.Record) bool {
				if r.Rev > sn.rev && hasAnyPrefix(r.Key, prefixes) {
					delta = append(delta, r)
				}
				return true
			})
			sort.Slice(delta, func(i, j int) bool { return delta[i].Rev < delta[j].Rev })
		}
		c.metrics.snapshotsShared.Inc()
		return sn, delta
	}
	out := make([]*wire.Record, 0)
	v.Scan(func(r *wire.Record) bool {
		if !r.Deleted && hasAnyPrefix(r.Key, prefixes) {
			out = append(out, r)
		}
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	sn = &sharedSnapshot{recs: out[:len(out):len(out)], prefixes: prefixes, rev: rev, taken: time.Now()}
	c.metrics.snapshotsTaken.Inc()
	sc.mu.Lock()
	kept := false
	if old, ok := sc.byPS[key]; ok || len(sc.byPS) < maxSharedSnapshots {
		if ok {
			old.close()
		}
		sc.byPS[key], kept = sn, true
	} else {
		for k, old := range sc.byPS { // full: replace one that is too old to share
			if time.Since(old.taken) >= snapshotReuse {
				old.close()
				delete(sc.byPS, k)
				sc.byPS[key], kept = sn, true
				break
			}
		}
	}
	sc.mu.Unlock()
	if !kept {
		sn.close() // not shared: nobody else will take it
	}
	return sn, nil
}

// expire closes and forgets the snapshots too old to hand out again.
func (sc *snapshotCache) expire(now time.Time) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for k, sn := range sc.byPS {
		if now.Sub(sn.taken) >= snapshotReuse {
			sn.close()
			delete(sc.byPS, k)
		}
	}
}

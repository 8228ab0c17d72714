package registry

import (
	"context"
	"fmt"
	"time"
)

// Every change to a center's records goes through one goroutine, the
// committer, in batches: it decides each operation against the current state
// (last-writer-wins by Version), writes the batch to bbolt in one fsync'd
// transaction, then publishes it in memory (records, revision, digests),
// hands it to subscribers and to liveness, and only then acknowledges. So a
// change is pushed or acknowledged only once it is durable, and revisions
// are issued in the order changes become visible.

type opKind uint8

const (
	opPut    opKind = iota + 1 // a client's write: new version from this center
	opDelete                   // a client's delete: tombstone with a new version
	opApply                    // a replicated record: applied if its version is newer
	opExpire                   // liveness: tombstone, if the record is still at expect
	opPurge                    // tombstone GC: forget the key, if still the tombstone at expect
)

type op struct {
	kind   opKind
	key    string
	value  []byte
	rec    Record        // opApply
	expect Version       // opExpire, opPurge
	connID uint64        // opPut of an instance tied to its connection
	ttl    time.Duration // opPut of an instance
	after  uint64        // opDelete: the highest version the client has seen (admitted), or 0
	wid    string        // opPut, opDelete: the client's id of this write (see retry.go)
}

type opResult struct {
	Version Version
	Rev     uint64
	Applied bool
	// Absent: a delete found no live record and left a fence (a tombstone
	// just past the client's after) at Version; it answers not_found.
	Absent bool
	Err    error
}

type writeReq struct {
	ops      []op
	fromPeer bool // changes are not replicated back to the peer
	done     func([]opResult, error)
}

// effect is one step of a committed batch, in order.
type effect struct {
	key      string
	rec      *Record // nil: purged
	fromPeer bool
	connID   uint64
	ttl      time.Duration
}

const maxCommitBatch = 1024

// submit queues a write. done runs on the committer goroutine (it must not
// block) with per-op results, or with an error if nothing was committed.
func (c *Center) submit(req *writeReq) {
	select {
	case c.writes <- req:
	case <-c.ctx.Done():
		req.done(nil, ErrClosed)
	}
}

// write submits ops and waits for their results.
func (c *Center) write(ctx context.Context, fromPeer bool, ops ...op) ([]opResult, error) {
	type answer struct {
		res []opResult
		err error
	}
	ch := make(chan answer, 1)
	c.submit(&writeReq{ops: ops, fromPeer: fromPeer, done: func(r []opResult, err error) { ch <- answer{r, err} }})
	select {
	case a := <-ch:
		return a.res, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, ErrClosed
	}
}

func (c *Center) commitLoop() {
	batch := make([]*writeReq, 0, maxCommitBatch)
	for {
		select {
		case r := <-c.writes:
			batch = append(batch[:0], r)
		case <-c.ctx.Done():
			c.drainWrites()
			return
		}
	more:
		for len(batch) < maxCommitBatch {
			select {
			case r := <-c.writes:
				batch = append(batch, r)
			default:
				break more
			}
		}
		c.commit(batch)
		clear(batch)
	}
}

func (c *Center) drainWrites() {
	for {
		select {
		case r := <-c.writes:
			r.done(nil, ErrClosed)
		default:
			return
		}
	}
}

func (c *Center) commit(batch []*writeReq) {
	overlay := make(map[string]*Record)
	lookup := func(k string) *Record {
		if r, ok := overlay[k]; ok {
			return r
		}
		return c.recs[k] // safe without mu: only this goroutine writes recs
	}
	rev, compacted := c.rev, c.compactedRev
	var effects []effect
	var changes []*Record
	results := make([][]opResult, len(batch))
	now := time.Now()
	for i, req := range batch {
		results[i] = make([]opResult, len(req.ops))
		for j, o := range req.ops {
			res := &results[i][j]
			old := lookup(o.key)
			if o.wid != "" && (o.kind == opPut || o.kind == opDelete) {
				// A retry of a write this center already holds: the same
				// write, answered with its version; nothing is written.
				if e, ok := c.retries.get(o.wid); ok && e.key == o.key {
					*res = opResult{Version: e.version, Rev: rev}
					continue
				}
			}
			var nr *Record
			restamp := false
			switch o.kind {
			case opPut:
				nr = &Record{Key: o.key, Value: o.value, Version: Version{HLC: c.clock.Now(), Origin: c.id}, WID: o.wid}
			case opDelete:
				if old == nil || old.Deleted {
					fence := Version{HLC: o.after + 1, Origin: c.id}
					if o.after == 0 || (old != nil && !old.Version.Less(fence)) {
						res.Err = fmt.Errorf("%w: %s", ErrNotFound, o.key)
						continue
					}
					// The client may have written the key on the other center
					// (its after says so), and that write may not have reached
					// us yet. A tombstone just past after beats it when it comes,
					// but nothing newer: not a write the client never saw.
					c.clock.Observe(fence.HLC)
					nr = &Record{Key: o.key, Version: fence, Deleted: true, WID: o.wid}
					res.Absent = true
					break
				}
				nr = &Record{Key: o.key, Version: Version{HLC: c.clock.Now(), Origin: c.id}, Deleted: true, WID: o.wid}
			case opApply:
				in := o.rec
				if !c.admitVersion(in.Version.HLC, fromPeer) {
					res.Err = fmt.Errorf("%w: %s is stamped %v, more than %v ahead of this center's clock", ErrInvalid,
						o.key, in.Version.Time().UTC(), c.opts.MaxClockAhead)
					continue
				}
				if old != nil && !old.Version.Less(in.Version) {
					res.Version = old.Version
					continue
				}
				if in.Deleted && old == nil && now.Sub(in.Version.Time()) > c.opts.TombstoneRetention {
					continue // a tombstone we would purge at once
				}
				nr = &Record{Key: in.Key, Value: in.Value, Version: in.Version, Deleted: in.Deleted, WID: in.WID}
				if nr.Deleted {
					nr.Value = nil
				}
				if e, ok := c.retries.get(in.WID); ok && in.WID != "" && e.version.Origin == c.id &&
					e.version != in.Version && old != nil && old.WID != in.WID {
					// The first attempt of a write we committed as its retry,
					// stamped above the retry; the key has moved on here since.
					// What we hold came after the write: stamp it anew, above
					// the first attempt, rather than let the first attempt win.
					nr = &Record{Key: old.Key, Value: old.Value, Deleted: old.Deleted, WID: old.WID,
						Version: Version{HLC: c.clock.Now(), Origin: c.id}}
					c.metrics.restamped.Inc()
					restamp = true
				}
			case opExpire:
				if old == nil || old.Deleted || old.Version != o.expect {
					continue
				}
				nr = &Record{Key: o.key, Version: Version{HLC: c.clock.Now(), Origin: c.id}, Deleted: true}
			case opPurge:
				if old == nil || !old.Deleted || old.Version != o.expect {
					continue
				}
				overlay[o.key] = nil
				compacted = max(compacted, old.Rev)
				effects = append(effects, effect{key: o.key})
				res.Applied = true
				continue
			}
			rev++
			nr.Rev = rev
			overlay[o.key] = nr
			changes = append(changes, nr)
			// A record stamped anew must go back to the peer, whatever brought it.
			effects = append(effects, effect{key: o.key, rec: nr, fromPeer: req.fromPeer && !restamp, connID: o.connID, ttl: o.ttl})
			*res = opResult{Version: nr.Version, Rev: rev, Applied: true, Absent: res.Absent}
		}
	}
	if len(effects) > 0 && c.store != nil {
		var purged []string
		for k, r := range overlay {
			if r == nil {
				purged = append(purged, k)
			}
		}
		if err := c.store.commit(changes, purged, rev, compacted); err != nil {
			c.storeFailed(err)
			for _, req := range batch {
				req.done(nil, fmt.Errorf("%w: this center cannot persist (%v); use the other center", ErrUnavailable, err))
			}
			return
		}
	}
	for _, e := range effects {
		if e.rec != nil && e.rec.WID != "" {
			c.retries.add(e.rec.WID, retryEntry{key: e.key, version: e.rec.Version, at: now})
		}
	}
	if len(effects) > 0 {
		c.publish(effects, rev, compacted)
	}
	for i, req := range batch {
		req.done(results[i], nil)
	}
}

// publish makes a durable batch visible: records, digests, subscribers and
// leases, in order.
func (c *Center) publish(effects []effect, rev, compacted uint64) {
	c.mu.Lock()
	for _, e := range effects {
		if old := c.recs[e.key]; old != nil {
			c.digests.remove(old)
		}
		if e.rec == nil {
			delete(c.recs, e.key)
			c.metrics.purged.Inc()
			continue
		}
		c.recs[e.key] = e.rec
		c.digests.add(e.rec)
	}
	c.rev, c.compactedRev = rev, compacted
	for s := range c.subs {
		s.offer(effects)
	}
	n := len(c.recs)
	c.mu.Unlock()

	c.metrics.records.Set(float64(n))
	now := time.Now()
	for _, e := range effects {
		if e.rec == nil {
			continue
		}
		c.metrics.writes.Inc()
		if !e.rec.IsInstance() {
			continue
		}
		if e.rec.Deleted {
			c.live.remove(e.key)
		} else {
			c.live.upsert(e.rec, e.connID, now)
		}
	}
}

package pair

import (
	"context"
	"fmt"
	"time"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
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
	rec    wire.Record   // opApply
	expect wire.Version  // opExpire, opPurge
	connID uint64        // opPut of an instance tied to its connection
	ttl    time.Duration // opPut of an instance
	after  uint64        // opDelete: the highest version the client has seen (admitted), or 0
	wid    string        // opPut, opDelete: the client's id of this write (see retry.go)
}

type opResult struct {
	Version wire.Version
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
	rec      *wire.Record // nil: purged
	fromPeer bool
	connID   uint64
	ttl      time.Duration
}

const maxCommitBatch = 1024

// submit queues a write. done runs on the committer goroutine (it must not
// block) with per-op results, or with an error if nothing was committed.
func (b *Backend) submit(req *writeReq) {
	select {
	case b.writes <- req:
	case <-b.ctx.Done():
		req.done(nil, wire.ErrClosed)
	}
}

// write submits ops and waits for their results.
func (b *Backend) write(ctx context.Context, fromPeer bool, ops ...op) ([]opResult, error) {
	type answer struct {
		res []opResult
		err error
	}
	ch := make(chan answer, 1)
	b.submit(&writeReq{ops: ops, fromPeer: fromPeer, done: func(r []opResult, err error) { ch <- answer{r, err} }})
	select {
	case a := <-ch:
		return a.res, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.ctx.Done():
		return nil, wire.ErrClosed
	}
}

func (b *Backend) commitLoop() {
	batch := make([]*writeReq, 0, maxCommitBatch)
	for {
		select {
		case r := <-b.writes:
			batch = append(batch[:0], r)
		case <-b.ctx.Done():
			b.drainWrites()
			return
		}
	more:
		for len(batch) < maxCommitBatch {
			select {
			case r := <-b.writes:
				batch = append(batch, r)
			default:
				break more
			}
		}
		b.commit(batch)
		clear(batch)
	}
}

func (b *Backend) drainWrites() {
	for {
		select {
		case r := <-b.writes:
			r.done(nil, wire.ErrClosed)
		default:
			return
		}
	}
}

func (b *Backend) commit(batch []*writeReq) {
	overlay := make(map[string]*wire.Record)
	lookup := func(k string) *wire.Record {
		if r, ok := overlay[k]; ok {
			return r
		}
		return b.Recs[k] // safe without mu: only this goroutine writes recs
	}
	rev, compacted := b.Rev, b.CompactedRev
	var effects []effect
	var changes []*wire.Record
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
				if e, ok := b.retries.get(o.wid); ok && e.key == o.key {
					*res = opResult{Version: e.version, Rev: rev}
					continue
				}
			}
			var nr *wire.Record
			restamp := false
			switch o.kind {
			case opPut:
				nr = &wire.Record{Key: o.key, Value: o.value, Version: wire.Version{HLC: b.clock.Now(), Origin: b.id}, WID: o.wid}
			case opDelete:
				if old == nil || old.Deleted {
					fence := wire.Version{HLC: o.after + 1, Origin: b.id}
					if o.after == 0 || (old != nil && !old.Version.Less(fence)) {
						res.Err = fmt.Errorf("%w: %s", wire.ErrNotFound, o.key)
						continue
					}
					// The client may have written the key on the other center
					// (its after says so), and that write may not have reached
					// us yet. A tombstone just past after beats it when it comes,
					// but nothing newer: not a write the client never saw.
					b.clock.Observe(fence.HLC)
					nr = &wire.Record{Key: o.key, Version: fence, Deleted: true, WID: o.wid}
					res.Absent = true
					break
				}
				nr = &wire.Record{Key: o.key, Version: wire.Version{HLC: b.clock.Now(), Origin: b.id}, Deleted: true, WID: o.wid}
			case opApply:
				in := o.rec
				if !b.admitVersion(in.Version.HLC, fromPeer) {
					res.Err = fmt.Errorf("%w: %s is stamped %v, more than %v ahead of this center's clock", wire.ErrInvalid,
						o.key, in.Version.Time().UTC(), b.opts.MaxClockAhead)
					continue
				}
				if old != nil && !old.Version.Less(in.Version) {
					res.Version = old.Version
					continue
				}
				if in.Deleted && old == nil && now.Sub(in.Version.Time()) > b.opts.TombstoneRetention {
					continue // a tombstone we would purge at once
				}
				nr = &wire.Record{Key: in.Key, Value: in.Value, Version: in.Version, Deleted: in.Deleted, WID: in.WID}
				if nr.Deleted {
					nr.Value = nil
				}
				if e, ok := b.retries.get(in.WID); ok && in.WID != "" && e.version.Origin == b.id &&
					e.version != in.Version && old != nil && old.WID != in.WID {
					// The first attempt of a write we committed as its retry,
					// stamped above the retry; the key has moved on here since.
					// What we hold came after the write: stamp it anew, above
					// the first attempt, rather than let the first attempt win.
					nr = &wire.Record{Key: old.Key, Value: old.Value, Deleted: old.Deleted, WID: old.WID,
						Version: wire.Version{HLC: b.clock.Now(), Origin: b.id}}
					b.metrics.restamped.Inc()
					restamp = true
				}
			case opExpire:
				if old == nil || old.Deleted || old.Version != o.expect {
					continue
				}
				nr = &wire.Record{Key: o.key, Version: wire.Version{HLC: b.clock.Now(), Origin: b.id}, Deleted: true}
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
	if len(effects) > 0 && b.store != nil {
		var purged []string
		for k, r := range overlay {
			if r == nil {
				purged = append(purged, k)
			}
		}
		if err := b.store.commit(changes, purged, rev, compacted); err != nil {
			b.front.StoreFailed(err)
			for _, req := range batch {
				req.done(nil, fmt.Errorf("%w: this center cannot persist (%v); use the other center", wire.ErrUnavailable, err))
			}
			return
		}
	}
	for _, e := range effects {
		if e.rec != nil && e.rec.WID != "" {
			b.retries.add(e.rec.WID, retryEntry{key: e.key, version: e.rec.Version, at: now})
		}
	}
	if len(effects) > 0 {
		b.publish(effects, rev, compacted)
	}
	for i, req := range batch {
		req.done(results[i], nil)
	}
}

// publish makes a durable batch visible: records and digests, then the
// front (subscribers and leases) and the replicator's queue, all under mu
// so that a Read sees the batch entirely or not at all.
func (b *Backend) publish(effects []effect, rev, compacted uint64) {
	changes := make([]center.Change, len(effects))
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, e := range effects {
		if old := b.Recs[e.key]; old != nil {
			b.digests.remove(old)
		}
		changes[i] = center.Change{Key: e.key, Rec: e.rec, FromPeer: e.fromPeer, ConnID: e.connID, TTL: e.ttl}
		if e.rec == nil {
			delete(b.Recs, e.key)
			b.metrics.purged.Inc()
			continue
		}
		b.Recs[e.key] = e.rec
		b.digests.add(e.rec)
	}
	b.Rev, b.CompactedRev = rev, compacted
	b.front.Publish(changes, rev)
	for q := range b.outgoing {
		q.offer(changes)
	}
}

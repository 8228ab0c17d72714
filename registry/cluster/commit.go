package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Every write goes through one goroutine, the committer, in batches: one
// etcd transaction per batch (keys distinct within it), so writes commit in
// the order they were submitted and a majority round trip is shared by
// every write queued meanwhile. A put is an etcd put (an instance's is
// attached to this center's lease); a delete is a nested transaction that
// deletes the key if it exists; an expiry deletes it only if its mod
// revision is still the version the front saw.

const maxBatchOps = 256

func (b *Backend) commitLoop() {
	var carry *writeReq
	for {
		batch := make([]*writeReq, 0, 16)
		keys := make(map[string]struct{})
		nops := 0
		add := func(r *writeReq) bool {
			for _, o := range r.ops {
				if _, dup := keys[o.Key]; dup {
					return false
				}
			}
			for _, o := range r.ops {
				keys[o.Key] = struct{}{}
			}
			batch = append(batch, r)
			nops += len(r.ops)
			return true
		}
		if carry != nil {
			add(carry)
			carry = nil
		} else {
			select {
			case r := <-b.writes:
				add(r)
			case <-b.ctx.Done():
				b.drainWrites()
				return
			}
		}
	more:
		for nops < maxBatchOps {
			select {
			case r := <-b.writes:
				if !add(r) {
					carry = r
					break more
				}
			default:
				break more
			}
		}
		b.commit(batch)
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

// opKind says how to read an op's response in the transaction.
type opRef struct {
	req, op int
	kind    center.OpKind
	seq     uint64
}

func (b *Backend) commit(batch []*writeReq) {
	var thens []clientv3.Op
	var refs []opRef
	lease := clientv3.LeaseID(b.leaseID.Load())
	fail := func(err error) {
		for _, r := range refs {
			if r.seq != 0 {
				b.takePending(r.seq)
			}
		}
		for _, req := range batch {
			req.done(nil, err)
		}
	}
	b.mu.RLock()
	for i, req := range batch {
		req.res = make([]center.Result, len(req.ops))
		for j, o := range req.ops {
			k := b.recPrefix + o.Key
			cur := b.Recs[o.Key]
			switch o.Kind {
			case center.OpPut:
				if o.WID != "" && cur != nil && !cur.Deleted && cur.WID == o.WID {
					// A retry of a write the cluster holds: answered with its version.
					req.res[j] = center.Result{Version: cur.Version, Rev: b.Rev}
					continue
				}
				s := &stored{Value: o.Value, WID: o.WID}
				var opts []clientv3.OpOption
				if (&wire.Record{Key: o.Key}).IsInstance() {
					if lease == 0 {
						b.mu.RUnlock()
						fail(unavailable(errLeaseLost))
						return
					}
					s.Owner = b.opts.Name
					if o.ConnID != 0 {
						s.Seq = b.addPending(o.ConnID)
					}
					opts = append(opts, clientv3.WithLease(lease))
				}
				v, err := encodeStored(s)
				if err != nil {
					req.res[j].Err = err
					continue
				}
				thens = append(thens, clientv3.OpPut(k, v, opts...))
				refs = append(refs, opRef{req: i, op: j, kind: o.Kind, seq: s.Seq})
			case center.OpDelete:
				thens = append(thens, clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), ">", 0)},
					[]clientv3.Op{clientv3.OpDelete(k)}, nil))
				refs = append(refs, opRef{req: i, op: j, kind: o.Kind})
			case center.OpExpire:
				if !b.judges(o.Key) {
					continue // not ours to judge: its owner's lease ends it
				}
				if o.Expect.Origin != b.id {
					continue
				}
				thens = append(thens, clientv3.OpTxn(
					[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(k), "=", int64(o.Expect.HLC))},
					[]clientv3.Op{clientv3.OpDelete(k)}, nil))
				refs = append(refs, opRef{req: i, op: j, kind: o.Kind})
			}
		}
	}
	b.mu.RUnlock()
	if len(thens) == 0 {
		for _, req := range batch {
			req.done(req.res, nil)
		}
		return
	}
	if b.member != nil && !b.member.hasLeader() {
		b.metrics.refused.Inc()
		fail(unavailable(errNoLeader))
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.WriteTimeout)
	if b.member != nil {
		b.cancelOnLeaderChange(ctx, cancel)
	}
	start := time.Now()
	resp, err := b.cli.Txn(ctx).Then(thens...).Commit()
	cancel()
	if err != nil {
		if b.ctx.Err() != nil {
			fail(wire.ErrClosed)
			return
		}
		b.metrics.refused.Inc()
		if errors.Is(err, context.Canceled) {
			err = errors.New("the raft leader changed while the write was in flight; it may or may not have committed")
		} else if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not committed within %v: no majority of voters answered", b.opts.WriteTimeout)
		}
		b.front.StoreFailed(unavailable(err))
		fail(unavailable(err))
		return
	}
	b.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	rev := uint64(resp.Header.Revision)
	changed := false
	for n, r := range refs {
		res := &batch[r.req].res[r.op]
		applied := true
		if t := resp.Responses[n].GetResponseTxn(); t != nil {
			applied = t.Succeeded
		}
		switch {
		case applied:
			changed = true
			*res = center.Result{Version: wire.Version{HLC: rev, Origin: b.id}, Rev: rev, Applied: true}
		case r.kind == center.OpDelete:
			res.Err = fmt.Errorf("%w: %s", wire.ErrNotFound, batch[r.req].ops[r.op].Key)
		}
	}
	if !changed {
		for _, req := range batch {
			req.done(req.res, nil)
		}
		return
	}
	now := time.Now()
	b.waitMu.Lock()
	for _, req := range batch {
		req.rev, req.at = rev, now
		b.waiters = append(b.waiters, req)
	}
	b.waitMu.Unlock()
	b.answerWaiters(false)
}

// cancelOnLeaderChange cancels a write in flight when the member's raft
// leader changes: a proposal forwarded to a leader that died is lost, and
// would otherwise hold the batch (and every client behind it) for the
// whole write timeout. The client is told unavailable and retries with
// the same write id, which the cluster recognises if the write committed.
func (b *Backend) cancelOnLeaderChange(ctx context.Context, cancel context.CancelFunc) {
	lead := b.member.e.Server.Leader()
	go func() {
		t := time.NewTicker(time.Duration(b.opts.TickMs) * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if b.member.e.Server.Leader() != lead {
					cancel()
					return
				}
			}
		}
	}()
}

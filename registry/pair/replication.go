package pair

import (
	"context"
	"sync"
	"time"

	"github.com/shmreg/shmreg/internal/backoff"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// The replicator mirrors this center's changes to the peer. It dials the
// peer as role peer, registers an internal subscriber for every change that
// did not come from the peer, repairs everything older by anti-entropy, then
// streams the subscriber's changes, each batch acknowledged once durable on
// the peer. Heartbeats are forwarded as touches. Anything lost when the link
// breaks is repaired by the anti-entropy pass of the next connection; both
// centers run a replicator, so each direction is covered twice.

func (b *Backend) replicateLoop() {
	// A link that fails at once (the peer refuses us, cannot persist, or is
	// not a center) is retried at growing, jittered pauses, up to 5s; one
	// that stayed up a while is retried at once.
	bo := backoff.New(50*time.Millisecond, 5*time.Second)
	for b.ctx.Err() == nil {
		start := time.Now()
		err := b.replicateOnce(b.ctx)
		b.peerUp.Store(false)
		if b.ctx.Err() != nil {
			return
		}
		if time.Since(start) > 5*time.Second {
			bo.Reset()
		}
		pause := bo.Next()
		b.log.Warn("replication link down", "peer", b.opts.Peer, "err", err, "retry_in", pause.Round(time.Millisecond))
		select {
		case <-time.After(pause):
		case <-b.ctx.Done():
			return
		}
	}
}

func (b *Backend) replicateOnce(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := registry.Dial(dctx, b.opts.Peer, registry.DialOptions{
		Role: wire.RolePeer, Token: b.opts.Token, TLS: b.opts.PeerTLS, MaxFrame: b.opts.MaxFrame,
		KeepAlive: b.opts.KeepAlive, Name: b.id, CenterID: b.id,
	})
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	// Subscribe before anti-entropy so that no change falls between them.
	q := b.watchOutgoing()
	defer b.unwatchOutgoing(q)

	repaired, err := b.antiEntropy(ctx, conn)
	if err != nil {
		return err
	}
	b.peerUp.Store(true)
	b.log.Info("replication link up", "peer", b.opts.Peer, "peer_id", conn.CenterID(), "repaired", repaired)

	touchT := time.NewTicker(b.opts.TouchInterval)
	defer touchT.Stop()
	aeT := time.NewTicker(b.opts.AntiEntropyInterval)
	defer aeT.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-conn.Done():
			return conn.Err()
		case <-q.notify:
			recs, overflow := q.take()
			if overflow {
				// Changes were dropped: anti-entropy finds and sends them.
				if _, err := b.antiEntropy(ctx, conn); err != nil {
					return err
				}
			}
			if len(recs) == 0 {
				continue
			}
			for _, ch := range wire.ChunkRecords(recs, conn.MaxFrame()/2) {
				if err := conn.Replicate(ctx, ch); err != nil {
					return err
				}
				b.metrics.replSent.Add(float64(len(ch)))
			}
			b.metrics.replLag.Set(time.Since(recs[len(recs)-1].Version.Time()).Seconds())
		case <-touchT.C:
			keys := b.front.TakeTouched()
			for len(keys) > 0 {
				n := min(len(keys), 8192)
				if err := conn.Touch(keys[:n]); err != nil {
					return err
				}
				keys = keys[n:]
			}
		case <-aeT.C:
			n, err := b.antiEntropy(ctx, conn)
			if err != nil {
				return err
			}
			if n > 0 {
				b.log.Info("anti-entropy repaired records", "peer_id", conn.CenterID(), "repaired", n)
			}
		}
	}
}

// changeQueue collects the changes made at this center (not those that came
// from the peer) for the replicator, while its link is up.
type changeQueue struct {
	mu       sync.Mutex
	recs     []*wire.Record
	overflow bool
	notify   chan struct{} // capacity 1
}

// maxOutgoing bounds the changes queued for the peer; beyond it they are
// dropped and the next anti-entropy pass sends them.
const maxOutgoing = 1 << 20

// offer queues changes; called with Backend.mu held.
func (q *changeQueue) offer(changes []center.Change) {
	q.mu.Lock()
	added := false
	for _, ch := range changes {
		if ch.Rec == nil || ch.FromPeer {
			continue
		}
		if len(q.recs) >= maxOutgoing {
			q.overflow = true
			break
		}
		q.recs = append(q.recs, ch.Rec)
		added = true
	}
	q.mu.Unlock()
	if added || q.overflow {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
}

func (q *changeQueue) take() (recs []*wire.Record, overflow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	recs, overflow = q.recs, q.overflow
	q.recs, q.overflow = nil, false
	return recs, overflow
}

// watchOutgoing starts queueing this center's changes for the replicator.
func (b *Backend) watchOutgoing() *changeQueue {
	q := &changeQueue{notify: make(chan struct{}, 1)}
	b.mu.Lock()
	b.outgoing[q] = struct{}{}
	b.mu.Unlock()
	return q
}

func (b *Backend) unwatchOutgoing(q *changeQueue) {
	b.mu.Lock()
	delete(b.outgoing, q)
	b.mu.Unlock()
}

package registry

import (
	"context"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"time"
)

// The replicator mirrors this center's changes to the peer. It dials the
// peer as role peer, registers an internal subscriber for every change that
// did not come from the peer, repairs everything older by anti-entropy, then
// streams the subscriber's changes, each batch acknowledged once durable on
// the peer. Heartbeats are forwarded as touches. Anything lost when the link
// breaks is repaired by the anti-entropy pass of the next connection; both
// centers run a replicator, so each direction is covered twice.

func (c *Center) replicateLoop() {
	// A link that fails at once (the peer refuses us, cannot persist, or is
	// not a center) is retried at growing, jittered pauses, up to 5s; one
	// that stayed up a while is retried at once.
	b := newBackoff(50*time.Millisecond, 5*time.Second)
	for c.ctx.Err() == nil {
		start := time.Now()
		err := c.replicateOnce(c.ctx)
		c.peerUp.Store(false)
		if c.ctx.Err() != nil {
			return
		}
		if time.Since(start) > 5*time.Second {
			b.reset()
		}
		pause := b.next()
		c.log.Warn("replication link down", "peer", c.opts.Peer, "err", err, "retry_in", pause.Round(time.Millisecond))
		select {
		case <-time.After(pause):
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *Center) replicateOnce(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := Dial(dctx, c.opts.Peer, DialOptions{
		Role: RolePeer, Token: c.opts.Token, TLS: c.opts.PeerTLS, MaxFrame: c.opts.MaxFrame,
		KeepAlive: c.opts.KeepAlive, Name: c.id, centerID: c.id,
	})
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	// Subscribe before anti-entropy so that no change falls between them.
	sub := c.subscribeQuiet([]string{""}, true)
	defer c.unsubscribe(sub)

	repaired, err := c.antiEntropy(ctx, conn)
	if err != nil {
		return err
	}
	c.peerUp.Store(true)
	c.log.Info("replication link up", "peer", c.opts.Peer, "peer_id", conn.CenterID(), "repaired", repaired)

	touchT := time.NewTicker(c.opts.TouchInterval)
	defer touchT.Stop()
	aeT := time.NewTicker(c.opts.AntiEntropyInterval)
	defer aeT.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-conn.Done():
			return conn.Err()
		case <-sub.notify:
			batches, _ := sub.take() // overflow cannot lose data here: anti-entropy repairs
			var recs []*Record
			for _, b := range batches {
				recs = append(recs, b.recs...)
			}
			if len(recs) == 0 {
				continue
			}
			for _, ch := range wire.ChunkRecords(recs, conn.maxFrame/2) {
				if err := conn.replicate(ctx, ch); err != nil {
					return err
				}
				c.metrics.replSent.Add(float64(len(ch)))
			}
			c.metrics.replLag.Set(time.Since(recs[len(recs)-1].Version.Time()).Seconds())
		case <-touchT.C:
			keys := c.live.takeTouched()
			for len(keys) > 0 {
				n := min(len(keys), 8192)
				if err := conn.touch(keys[:n]); err != nil {
					return err
				}
				keys = keys[n:]
			}
		case <-aeT.C:
			n, err := c.antiEntropy(ctx, conn)
			if err != nil {
				return err
			}
			if n > 0 {
				c.log.Info("anti-entropy repaired records", "peer_id", conn.CenterID(), "repaired", n)
			}
		}
	}
}

package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/shmreg/shmreg/internal/backoff"
	"github.com/shmreg/shmreg/registry/internal/wire"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Every instance a center registers is attached to that center's etcd
// lease, which the center keeps alive. A center that dies (or is cut off
// from the majority for longer than LeaseTTL) takes its instances with it
// when the lease runs out: etcd deletes them and every center pushes the
// deletes. An SDK that moved to another center re-registers its instances
// there first (it does on every new connection), under that center's lease.

func (b *Backend) grantLease() error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.WriteTimeout)
	defer cancel()
	ttl := int64((b.opts.LeaseTTL + time.Second - 1) / time.Second)
	resp, err := b.cli.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("cluster: grant this center's lease: %w", err)
	}
	b.leaseID.Store(int64(resp.ID))
	b.log.Info("lease granted", "lease", fmt.Sprintf("%x", int64(resp.ID)), "ttl", resp.TTL)
	return nil
}

// leaseLoop keeps the lease alive, and grants a new one when it is lost.
func (b *Backend) leaseLoop() {
	bo := backoff.New(100*time.Millisecond, 2*time.Second)
	for b.ctx.Err() == nil {
		id := clientv3.LeaseID(b.leaseID.Load())
		if id == 0 {
			if err := b.grantLease(); err != nil {
				b.log.Warn("lease", "err", err)
				select {
				case <-time.After(bo.Next()):
				case <-b.ctx.Done():
				}
				continue
			}
			id = clientv3.LeaseID(b.leaseID.Load())
		}
		ka, err := b.cli.KeepAlive(b.ctx, id)
		if err == nil {
			for range ka {
				bo.Reset()
			}
		}
		if b.ctx.Err() != nil {
			return
		}
		// The keep-alive stream ended: the lease expired or was revoked (its
		// instances are gone or going); register new ones under a new lease.
		b.leaseID.Store(0)
		b.metrics.leasesLost.Inc()
		b.log.Warn("this center's lease is lost: its instances expire; heartbeating clients re-register them", "lease", fmt.Sprintf("%x", int64(id)), "err", err)
	}
}

// Judges: a center judges (holds a lease for, and expires) only the
// instances registered through it, whose heartbeats arrive here; the
// others end with their owner's etcd lease, or move here when their SDK
// re-registers them (a heartbeat here reports them missing).
func (b *Backend) Judges(r *wire.Record) bool { return b.judges(r.Key) }

func (b *Backend) judges(key string) bool {
	b.ownMu.RLock()
	defer b.ownMu.RUnlock()
	o, ok := b.owners[key]
	return !ok || o == b.opts.Name
}

// setOwner records the owner of an instance key ("": none).
func (b *Backend) setOwner(key, owner string) {
	b.ownMu.Lock()
	defer b.ownMu.Unlock()
	if owner == "" {
		delete(b.owners, key)
		return
	}
	b.owners[key] = owner
}

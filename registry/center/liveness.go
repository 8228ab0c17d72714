package center

import (
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// liveness tracks, for every live instance, when it must heartbeat next.
// Leases live only in memory: a center that (re)starts gives every instance
// a fresh TTL, so clients have one TTL to re-assert. Heartbeats a center
// receives are forwarded to the peer (touches) so both centers can judge
// liveness; an instance known only through the peer gets extra slack for
// the forwarding delay.
type liveness struct {
	c *Center

	mu      sync.Mutex
	leases  map[string]*lease
	byConn  map[uint64]map[string]struct{}
	touched map[string]struct{} // heartbeated here since the last forward to the peer
	holding map[string]bool     // services under self-preservation now
}

type lease struct {
	service   string
	version   wire.Version // the instance record this lease belongs to
	ttl       time.Duration
	deadline  time.Time
	connID    uint64    // nonzero: tied to this connection
	heldSince time.Time // nonzero: held back by self-preservation
}

func newLiveness(c *Center) *liveness {
	return &liveness{
		c:       c,
		leases:  make(map[string]*lease),
		byConn:  make(map[uint64]map[string]struct{}),
		touched: make(map[string]struct{}),
		holding: make(map[string]bool),
	}
}

func (l *liveness) peerSlack() time.Duration { return l.c.backend.HeartbeatSlack() }

// upsert (re)starts the lease of a live instance record.
func (l *liveness) upsert(r *wire.Record, connID uint64, now time.Time) {
	service, _, _ := wire.ParseInstanceKey(r.Key)
	ttl := wire.DefaultTTL
	if in, err := wire.DecodeInstance(r.Value); err == nil && in.TTL >= wire.MinTTL && in.TTL <= wire.MaxTTL {
		ttl = in.TTL
	}
	deadline := now.Add(ttl + l.c.opts.TTLGrace)
	if r.Version.Origin != l.c.ID() {
		deadline = deadline.Add(l.peerSlack())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.leases[r.Key]; old != nil && old.connID != 0 {
		l.untie(r.Key, old.connID)
	}
	l.leases[r.Key] = &lease{service: service, version: r.Version, ttl: ttl, deadline: deadline, connID: connID}
	if connID != 0 {
		set := l.byConn[connID]
		if set == nil {
			set = make(map[string]struct{})
			l.byConn[connID] = set
		}
		set[r.Key] = struct{}{}
	}
}

func (l *liveness) untie(key string, connID uint64) {
	if set := l.byConn[connID]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(l.byConn, connID)
		}
	}
}

func (l *liveness) remove(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.leases[key]; old != nil {
		if old.connID != 0 {
			l.untie(key, old.connID)
		}
		delete(l.leases, key)
	}
}

// touch renews leases; it returns the keys that have none (the caller must
// re-register them).
func (l *liveness) touch(keys []string, fromPeer bool) (missing []string) {
	now := time.Now()
	slack := l.c.opts.TTLGrace
	if fromPeer {
		slack += l.peerSlack()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		ls := l.leases[k]
		if ls == nil {
			missing = append(missing, k)
			continue
		}
		ls.deadline = now.Add(ls.ttl + slack)
		ls.heldSince = time.Time{}
		if !fromPeer && l.peerSlack() > 0 {
			l.touched[k] = struct{}{}
		}
	}
	return missing
}

// takeTouched returns and forgets the keys heartbeated since the last call.
func (l *liveness) takeTouched() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.touched) == 0 {
		return nil
	}
	out := make([]string, 0, len(l.touched))
	for k := range l.touched {
		out = append(out, k)
	}
	clear(l.touched)
	return out
}

// connClosed starts the disconnect grace of every instance tied to connID.
func (l *liveness) connClosed(connID uint64) {
	limit := time.Now().Add(l.c.opts.DisconnectGrace)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.byConn[connID] {
		if ls := l.leases[k]; ls != nil {
			ls.connID = 0
			if ls.deadline.After(limit) {
				ls.deadline = limit
			}
		}
	}
	delete(l.byConn, connID)
}

func (l *liveness) sweepLoop() {
	t := time.NewTicker(l.c.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-l.c.ctx.Done():
			return
		case now := <-t.C:
			l.sweep(now)
		}
	}
}

// sweep expires the leases past their deadline, except where
// self-preservation holds a suspect mass expiry back.
func (l *liveness) sweep(now time.Time) {
	opts := l.c.opts
	l.mu.Lock()
	total := make(map[string]int)
	expired := make(map[string][]string)
	for k, ls := range l.leases {
		total[ls.service]++
		if now.After(ls.deadline) {
			expired[ls.service] = append(expired[ls.service], k)
		}
	}
	var ops []Op
	held := 0
	for svc, keys := range expired {
		if opts.SelfPreservation > 0 && len(keys) >= opts.SelfPreservationMin &&
			float64(len(keys)) > opts.SelfPreservation*float64(total[svc]) {
			if !l.holding[svc] {
				l.holding[svc] = true
				l.c.metrics.holds.Inc()
				l.c.log.Warn("self-preservation: holding a mass expiry", "service", svc,
					"expiring", len(keys), "instances", total[svc], "max_hold", opts.SelfPreservationMaxHold)
			}
			release := keys[:0]
			for _, k := range keys {
				ls := l.leases[k]
				if ls.heldSince.IsZero() {
					ls.heldSince = now
				}
				if now.Sub(ls.heldSince) > opts.SelfPreservationMaxHold {
					release = append(release, k)
				} else {
					held++
				}
			}
			keys = release
		}
		for _, k := range keys {
			ops = append(ops, Op{Kind: OpExpire, Key: k, Expect: l.leases[k].version})
		}
	}
	for svc := range l.holding {
		if _, still := expired[svc]; !still {
			delete(l.holding, svc)
			l.c.log.Info("self-preservation: released", "service", svc)
		}
	}
	l.mu.Unlock()
	l.c.metrics.held.Set(float64(held))
	if len(ops) == 0 {
		return
	}
	l.c.backend.Write(ops, func(res []Result, err error) {
		if err != nil {
			return
		}
		for i, r := range res {
			if r.Applied {
				l.c.metrics.expiries.Inc()
				l.c.log.Info("instance expired", "key", ops[i].Key)
			}
		}
	})
}

// Touch renews the leases of instances heartbeated at the other center
// (see Front).
func (c *Center) Touch(keys []string) []string { return c.live.touch(keys, true) }

// TakeTouched returns the keys heartbeated here since the last call (see
// Front).
func (c *Center) TakeTouched() []string { return c.live.takeTouched() }

package center

import (
	"container/heap"
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
//
// Expiry does work in proportion to what comes due, not to what is
// registered: leases wait in a heap by the deadline they had when they were
// scheduled. A heartbeat that moves a deadline later only moves it; when the
// heap brings the lease up, it is scheduled again at its new deadline. So
// each lease passes through the heap about once a TTL, and a sweep of an
// idle center with 100K instances touches nothing. Invariant: a live lease
// whose deadline has not passed has an entry in the heap at or before its
// deadline (lease.scheduled); one past it is in the heap, or held.
type liveness struct {
	c   *Center
	now func() time.Time // time.Now; tests set their own clock

	mu         sync.Mutex
	leases     map[string]*lease
	due        dueHeap
	perSvc     map[string]int // leases per service, for self-preservation
	byConn     map[uint64]map[string]struct{}
	touched    map[string]struct{} // heartbeated here since the last forward to the peer
	holding    map[string]bool     // services under self-preservation now
	heldLeases map[*lease]struct{} // past their deadline, held back
}

type lease struct {
	key       string
	service   string
	version   wire.Version // the instance record this lease belongs to
	ttl       time.Duration
	deadline  time.Time
	scheduled time.Time // its earliest entry in the heap; zero: none
	connID    uint64    // nonzero: tied to this connection
	heldSince time.Time // nonzero: held back by self-preservation
}

// dueEntry schedules a lease at a deadline it had; the lease may since have
// been replaced (then the entry is dropped) or renewed (rescheduled).
type dueEntry struct {
	at time.Time
	l  *lease
}

// dueHeap is a min-heap of dueEntry by at.
type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newLiveness(c *Center) *liveness {
	return &liveness{
		c:          c,
		now:        time.Now,
		leases:     make(map[string]*lease),
		perSvc:     make(map[string]int),
		byConn:     make(map[uint64]map[string]struct{}),
		touched:    make(map[string]struct{}),
		holding:    make(map[string]bool),
		heldLeases: make(map[*lease]struct{}),
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
	if old := l.leases[r.Key]; old != nil {
		l.drop(old)
	}
	ls := &lease{key: r.Key, service: service, version: r.Version, ttl: ttl, deadline: deadline, connID: connID}
	l.leases[r.Key] = ls
	l.perSvc[service]++
	l.schedule(ls)
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
		l.drop(old)
	}
}

// schedule makes sure the lease has a heap entry no later than its
// deadline. Called with mu held.
func (l *liveness) schedule(ls *lease) {
	if !ls.scheduled.IsZero() && !ls.scheduled.After(ls.deadline) {
		return // an entry comes up no later than the deadline: it reschedules
	}
	heap.Push(&l.due, dueEntry{at: ls.deadline, l: ls})
	ls.scheduled = ls.deadline
	// Entries of replaced, removed or rescheduled leases stay until they
	// come up; when they outnumber the leases, rebuild the heap from them.
	if l.due.Len() > 2*len(l.leases)+1024 {
		l.due = l.due[:0]
		for _, x := range l.leases {
			x.scheduled = time.Time{}
			if _, held := l.heldLeases[x]; !held {
				l.due = append(l.due, dueEntry{at: x.deadline, l: x})
				x.scheduled = x.deadline
			}
		}
		heap.Init(&l.due)
	}
}

// drop forgets a lease (its heap entries are dropped when they come up).
// Called with mu held.
func (l *liveness) drop(ls *lease) {
	if ls.connID != 0 {
		l.untie(ls.key, ls.connID)
	}
	delete(l.leases, ls.key)
	delete(l.heldLeases, ls)
	if l.perSvc[ls.service]--; l.perSvc[ls.service] <= 0 {
		delete(l.perSvc, ls.service)
	}
}

// touch renews leases; it returns the keys that have none (the caller must
// re-register them).
func (l *liveness) touch(keys []string, fromPeer bool) (missing []string) {
	now := l.now()
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
		l.schedule(ls) // an earlier deadline than scheduled, or a lease out of the heap
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
	limit := l.now().Add(l.c.opts.DisconnectGrace)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.byConn[connID] {
		if ls := l.leases[k]; ls != nil {
			ls.connID = 0
			if ls.deadline.After(limit) {
				ls.deadline = limit
				l.schedule(ls) // sooner than it was scheduled
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
	// What came due: leases past their deadline (and those held back
	// before, looked at again), by service.
	expired := make(map[string][]*lease)
	seen := make(map[*lease]bool)
	add := func(ls *lease) {
		if !seen[ls] {
			seen[ls] = true
			expired[ls.service] = append(expired[ls.service], ls)
		}
	}
	held := l.heldLeases
	l.heldLeases = make(map[*lease]struct{})
	for ls := range held {
		switch {
		case l.leases[ls.key] != ls:
		case now.Before(ls.deadline):
			l.schedule(ls) // renewed while held (touch scheduled it already)
		default:
			add(ls)
		}
	}
	for l.due.Len() > 0 && !now.Before(l.due[0].at) {
		e := heap.Pop(&l.due).(dueEntry)
		ls := e.l
		if e.at.Equal(ls.scheduled) {
			ls.scheduled = time.Time{} // its earliest entry is out
		}
		switch {
		case l.leases[ls.key] != ls:
			// replaced or removed since it was scheduled
		case now.Before(ls.deadline):
			l.schedule(ls) // renewed: schedule again (unless an entry still covers it)
		default:
			add(ls)
		}
	}
	var ops []Op
	nheld := 0
	for svc, due := range expired {
		if opts.SelfPreservation > 0 && len(due) >= opts.SelfPreservationMin &&
			float64(len(due)) > opts.SelfPreservation*float64(l.perSvc[svc]) {
			if !l.holding[svc] {
				l.holding[svc] = true
				l.c.metrics.holds.Inc()
				l.c.log.Warn("self-preservation: holding a mass expiry", "service", svc,
					"expiring", len(due), "instances", l.perSvc[svc], "max_hold", opts.SelfPreservationMaxHold)
			}
			release := due[:0]
			for _, ls := range due {
				if ls.heldSince.IsZero() {
					ls.heldSince = now
				}
				if now.Sub(ls.heldSince) > opts.SelfPreservationMaxHold {
					release = append(release, ls)
				} else {
					nheld++
					l.heldLeases[ls] = struct{}{}
				}
			}
			due = release
		}
		for _, ls := range due {
			ops = append(ops, Op{Kind: OpExpire, Key: ls.key, Expect: ls.version})
			// Looked at again next sweep if the expiry does not happen (a
			// newer record, a failing store): the commit removes it.
			l.heldLeases[ls] = struct{}{}
		}
	}
	for svc := range l.holding {
		if _, still := expired[svc]; !still {
			delete(l.holding, svc)
			l.c.log.Info("self-preservation: released", "service", svc)
		}
	}
	l.mu.Unlock()
	l.c.metrics.held.Set(float64(nheld))
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

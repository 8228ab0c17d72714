package center

import (
	"fmt"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// A lease held back by self-preservation (popped from the heap, kept only in
// heldLeases) and then heartbeated loses its place everywhere: the next sweep
// clears heldLeases and nothing reschedules it, so when the instance later
// stops heartbeating it is never expired.
func TestHeldLeaseRenewedThenNeverExpires(t *testing.T) {
	c, b := newTestFront(t, Options{SelfPreservation: 0.85, SelfPreservationMin: 3, SelfPreservationMaxHold: time.Minute})
	l := c.live
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	keys := []string{wire.InstanceKey("svc", "a"), wire.InstanceKey("svc", "b"), wire.InstanceKey("svc", "c")}
	for i, k := range keys {
		l.upsert(instanceRecord(t, k, time.Second, uint64(i+1)), 0, now)
	}
	now = now.Add(2 * time.Second)
	b.ops = nil
	l.sweep(now) // all three due: a mass expiry, held
	if len(b.ops) != 0 {
		t.Fatalf("mass expiry not held: %v", b.ops)
	}
	l.touch([]string{keys[0]}, false) // a comes back
	now = now.Add(100 * time.Millisecond)
	l.sweep(now) // b and c: 2 < SelfPreservationMin, released
	for _, o := range b.ops {
		l.remove(o.Key) // what the commit's Publish does
	}
	// a stops heartbeating; its deadline (now+1s) passes long ago.
	b.ops = nil
	for range 50 {
		now = now.Add(200 * time.Millisecond)
		l.sweep(now)
	}
	if len(b.ops) == 0 {
		t.Fatalf("lease %s, %v past its deadline, never expired (in heap: %d entries, held: %d)",
			keys[0], now.Sub(l.leases[keys[0]].deadline), l.due.Len(), len(l.heldLeases))
	}
}

// The same without self-preservation: an expiry that did not commit (the
// store failed; nothing was published), then a heartbeat: the lease is never
// looked at again.
func TestFailedExpiryThenHeartbeatNeverExpires(t *testing.T) {
	c, b := newTestFront(t, Options{SelfPreservation: -1})
	l := c.live
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	k := wire.InstanceKey("svc", "a")
	l.upsert(instanceRecord(t, k, time.Second, 1), 0, now)
	now = now.Add(2 * time.Second)
	l.sweep(now)
	if len(b.ops) != 1 {
		t.Fatalf("want one expiry, got %v", b.ops)
	}
	// the expiry did not commit (no Publish); the instance heartbeats
	l.touch([]string{k}, false)
	now = now.Add(100 * time.Millisecond)
	l.sweep(now)
	b.ops = nil
	for range 50 {
		now = now.Add(200 * time.Millisecond)
		l.sweep(now)
	}
	if len(b.ops) == 0 {
		t.Fatalf("lease %v past its deadline never expired", now.Sub(l.leases[k].deadline))
	}
}

// Every upsert pushes a heap entry and a replaced lease's entries stay until
// their deadline: an instance re-registered (or updated) often with a long
// TTL would leave one dead entry, holding its old *lease, per update for a
// TTL (10,000 here). The heap is rebuilt when its entries outnumber the
// leases by more than 2x + 1024.
func TestReplacedLeasesStayInHeap(t *testing.T) {
	c, _ := newTestFront(t, Options{SelfPreservation: -1})
	l := c.live
	now := time.Unix(1_000_000, 0)
	k := wire.InstanceKey("svc", "a")
	for i := range 10000 {
		l.upsert(instanceRecord(t, k, wire.MaxTTL, uint64(i+1)), 0, now)
		now = now.Add(10 * time.Millisecond)
		l.sweep(now)
	}
	if len(l.leases) == 1 && l.due.Len() > 2*len(l.leases)+1024 {
		t.Fatalf("1 lease, %d heap entries (each holding a replaced lease) after 100s of updates", l.due.Len())
	}
}

// The case self-preservation exists for: a partition makes every instance
// of a service miss its heartbeats (held), the partition heals and they all
// heartbeat again. From then on none of them can ever expire: they were
// popped from the heap, and the next sweep drops them from heldLeases.
func TestPartitionHealsThenServiceNeverExpires(t *testing.T) {
	c, b := newTestFront(t, Options{})
	l := c.live
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	var keys []string
	for i := range 10 {
		k := wire.InstanceKey("svc", fmt.Sprint(i))
		keys = append(keys, k)
		l.upsert(instanceRecord(t, k, time.Second, uint64(i+1)), 0, now)
	}
	now = now.Add(1500 * time.Millisecond)
	l.sweep(now) // all 10 due at once: held
	if len(b.ops) != 0 {
		t.Fatalf("not held: %v", b.ops)
	}
	l.touch(keys, false) // the partition heals
	now = now.Add(200 * time.Millisecond)
	l.sweep(now)
	// Now one instance really dies (a lone expiry: below
	// SelfPreservationMin, it must expire); the others keep heartbeating.
	for range 100 {
		now = now.Add(200 * time.Millisecond)
		l.touch(keys[1:], false)
		l.sweep(now)
	}
	if len(b.ops) == 0 {
		t.Fatalf("%s: 20s after its last heartbeat (TTL 1s) it has not expired; held %d, heap %d", keys[0], len(l.heldLeases), l.due.Len())
	}
}

type slackBackend struct{ fakeBackend }

func (*slackBackend) HeartbeatSlack() time.Duration { return 2 * time.Second }

// An instance whose record came from the peer is scheduled at TTL + grace +
// peer slack; a heartbeat received here soon after sets its deadline to TTL
// + grace (no slack), earlier than its heap entry. It then expires only when
// the entry comes up, up to the peer slack late (a scan expired it on time).
func TestPeerRecordLocalHeartbeatExpiresLate(t *testing.T) {
	b := &slackBackend{}
	c, err := New(Options{SelfPreservation: -1, TTLGrace: time.Millisecond}, b)
	if err != nil {
		t.Fatal(err)
	}
	l := c.live
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	k := wire.InstanceKey("svc", "a")
	r := instanceRecord(t, k, time.Second, 1)
	r.Version.Origin = "c-peer"
	l.upsert(r, 0, now)
	now = now.Add(100 * time.Millisecond)
	l.touch([]string{k}, false) // deadline: now + 1s + 1ms
	for range 10 {
		now = now.Add(200 * time.Millisecond)
		l.sweep(now)
	}
	if len(b.ops) == 0 {
		t.Fatalf("deadline passed %v ago, not expired (heap entry at +%v)", now.Sub(l.leases[k].deadline), l.due[0].at.Sub(l.leases[k].deadline))
	}
}

package center

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// Catch-up pushes (snapshots, resumes) used to go through Outbox.Send, which
// charges frames of LargeFrame bytes or more to the center-wide MaxOutbound
// budget; they now go through EnqueueParts, which charges nothing. Here one
// connection that does not read holds more large push bytes than the whole
// center's MaxOutbound, and the budget is untouched.
func TestCatchUpPushesBypassOutboundBudget(t *testing.T) {
	c, _ := newTestFront(t, Options{MaxFrame: 1 << 20, MaxOutbound: 2 << 20, MaxConnQueue: 8 << 20})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	s := newSession(c, a) // its writer is not started: nothing is written
	defer s.out.Close(nil)
	var recs []*wire.Record
	for i := range 1000 {
		recs = append(recs, &wire.Record{Key: fmt.Sprint("cfg/", i), Value: make([]byte, 4<<10), Rev: uint64(i + 1)})
	}
	go s.sendPush(1, &pushBatch{recs: recs, rev: 1000})
	deadline := time.Now().Add(2 * time.Second)
	for s.out.Queued() <= c.opts.MaxOutbound && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	q := s.out.Queued()
	if q > c.opts.MaxOutbound && c.outbound.TryAcquire(int64(c.opts.MaxOutbound)) {
		t.Fatalf("%d bytes of large push frames queued on one connection, MaxOutbound is %d, and none of it is charged to the budget", q, c.opts.MaxOutbound)
	}
}

// A shared snapshot frame is dropped once every taker has sent it; a taker
// whose connection closes before it sends (its push goroutine abandons the
// snapshot, see session.pushLoop) must not keep the others' frames alive.
func TestSharedSnapshotFramesKeptWhenATakerQuits(t *testing.T) {
	for _, quitFirst := range []bool{true, false} {
		c, _ := newTestFront(t, Options{MaxFrame: 128 << 10})
		var recs []*wire.Record
		for i := range 100 {
			recs = append(recs, &wire.Record{Key: fmt.Sprint("cfg/", i), Value: make([]byte, 4<<10), Rev: uint64(i + 1)})
		}
		sn := &sharedSnapshot{recs: recs, prefixes: []string{"cfg/"}, rev: 100}
		sn.take() // a subscriber whose session ends before it sends anything
		sn.take() // one that sends everything
		if quitFirst {
			sn.abandon(0)
		}
		n := sn.frameCount(c)
		for i := range n {
			sn.frame(c, i)
			sn.sentFrame(i)
		}
		if !quitFirst {
			sn.abandon(0)
		}
		sn.close() // no longer handed out (replaced, or too old)
		kept := 0
		for _, f := range sn.frames {
			if f != nil {
				kept += len(f.Body)
			}
		}
		if kept > 0 {
			t.Fatalf("quit first %v: all %d frames sent by the one taker still sending; %d encoded bytes kept", quitFirst, n, kept)
		}
	}
}

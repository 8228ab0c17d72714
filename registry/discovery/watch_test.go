package discovery

import (
	"context"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// next receives one event or fails after a generous bound.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return Event{}
}

func TestWatchPrefix(t *testing.T) {
	w, c := testRegion(t, Options{})
	if err := w.Put([]byte("config/old"), []byte("0")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "config/")
	if err != nil {
		t.Fatal(err)
	}
	// Outside the prefix: no event. Inside: exactly the changed key.
	if err := w.Put([]byte("other/x"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("config/a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	ev := next(t, ch)
	if len(ev.Changes) != 1 || ev.Changes[0].Key != "config/a" || string(ev.Changes[0].Value) != "1" || ev.Changes[0].Deleted {
		t.Fatalf("event %+v", ev)
	}
	deleteKey(t, w, "config/old")
	ev = next(t, ch)
	if len(ev.Changes) != 1 || ev.Changes[0].Key != "config/old" || !ev.Changes[0].Deleted {
		t.Fatalf("delete event %+v", ev)
	}
	// One commit with several keys is one event, in key order.
	if err := w.Put([]byte("config/b"), []byte("2")); err != nil { // separate commit, may merge
		t.Fatal(err)
	}
	got := map[string]string{}
	for len(got) < 1 {
		for _, ch := range next(t, ch).Changes {
			got[ch.Key] = string(ch.Value)
		}
	}
	if got["config/b"] != "2" {
		t.Fatalf("changes %v", got)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			// drain a racing event, then expect the close
			if _, ok := <-ch; ok {
				t.Fatal("channel not closed after ctx ended")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after ctx ended")
	}
}

// A receiver that does not read while several commits happen gets one
// merged event with every key's final state.
func TestWatchMergesWhileReceiverIsSlow(t *testing.T) {
	w, c := testRegion(t, Options{WatchBuffer: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.Watch(ctx, "k/")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := w.Put([]byte("k/a"), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Put([]byte("k/z"), []byte("end")); err != nil {
		t.Fatal(err)
	}
	final := map[string][]byte{}
	deadline := time.After(5 * time.Second)
	for string(final["k/z"]) != "end" {
		select {
		case ev := <-ch:
			for _, c := range ev.Changes {
				final[c.Key] = c.Value
			}
		case <-deadline:
			t.Fatalf("final state not reached: %v", final)
		}
	}
	// k/z's commit came after the last k/a one, so k/a's final value was
	// reported by then.
	if len(final["k/a"]) != 1 || final["k/a"][0] != 49 {
		t.Fatalf("k/a = %v, want [49]", final["k/a"])
	}
}

func hubWaiters(t *testing.T) int {
	t.Helper()
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	return strings.Count(b.String(), "discovery.(*hub).wait")
}

// Many watchers share exactly one goroutine waiting on the region; it goes
// away with the last watcher and comes back with the next one.
func TestWatchOneWaiterForAllWatchers(t *testing.T) {
	w, c := testRegion(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	const n = 8
	chans := make([]<-chan Event, n)
	for i := range chans {
		ch, err := c.Watch(ctx, "svc/")
		if err != nil {
			t.Fatal(err)
		}
		chans[i] = ch
	}
	putInstance(t, w, inst("orders", "a", 1))
	for _, ch := range chans {
		if ev := next(t, ch); ev.Changes[0].Key != "svc/orders/a" {
			t.Fatalf("event %+v", ev)
		}
	}
	// Every watcher got its event, so the waiter has run.
	if got := hubWaiters(t); got != 1 {
		t.Fatalf("%d waiting goroutines for %d watchers, want 1", got, n)
	}
	cancel()
	for _, ch := range chans {
		for range ch {
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for hubWaiters(t) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("waiter still running after the last watcher left")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ch, err := c.Watch(ctx2, "svc/")
	if err != nil {
		t.Fatal(err)
	}
	deleteKey(t, w, "svc/orders/a")
	if ev := next(t, ch); !ev.Changes[0].Deleted {
		t.Fatalf("event after restart %+v", ev)
	}
}

func TestWatchEndsAtClose(t *testing.T) {
	_, c := testRegion(t, Options{})
	ch, err := c.Watch(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("event after Close")
	}
	if _, err := c.Watch(context.Background(), ""); err == nil {
		t.Fatal("Watch after Close succeeded")
	}
}

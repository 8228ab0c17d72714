package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Change is one key's change under a watched prefix.
type Change struct {
	Key string
	// Value is the new value (a copy, the receiver's to keep); nil when
	// Deleted.
	Value   []byte
	Deleted bool
}

// Event is what a watcher receives after one or more commits changed its
// prefix: every key whose value differs from the previous event (or from
// the state when Watch returned), in key order.
type Event struct {
	Changes []Change
}

// Watch delivers the changes under prefix (a plain key prefix: "svc/orders/",
// "config/", or "" for everything) on the returned channel, until ctx ends or
// the catalog is closed; then the channel is closed. Changes are relative to
// the region's state when Watch returns: the current entries are not sent.
//
// Events are level-triggered: if commits come faster than the receiver
// reads, they are merged into one event holding each key's latest state, so
// a slow receiver never falls behind by more than one diff, and never misses
// the final state.
//
// Every watcher of a catalog shares one goroutine sleeping on the region's
// futex; a commit wakes it, it nudges each watcher, and each watcher scans
// its own prefix and diffs it against what it last sent.
func (c *Catalog) Watch(ctx context.Context, prefix string) (<-chan Event, error) {
	if c.shut.Load() {
		return nil, ErrClosed
	}
	w := &watcher{
		prefix: []byte(prefix),
		kick:   make(chan struct{}, 1),
		out:    make(chan Event, c.opts.WatchBuffer),
		state:  make(map[string]*watched),
	}
	if err := c.hub.add(w); err != nil {
		return nil, err
	}
	// The baseline is scanned after joining the hub: a commit after the
	// hub's sequence reading nudges this watcher, one before it is in the
	// baseline.
	if _, err := w.diff(c); err != nil {
		c.hub.remove(w)
		return nil, fmt.Errorf("discovery: watch %q: %w", prefix, err)
	}
	if !c.goTracked(func() { w.run(ctx, c) }) {
		c.hub.remove(w)
		return nil, ErrClosed
	}
	return w.out, nil
}

// watcher is one Watch call's state, owned by its goroutine.
type watcher struct {
	prefix []byte
	kick   chan struct{} // capacity 1: a pending nudge absorbs later ones
	out    chan Event
	state  map[string]*watched
	round  uint64
}

// watched is a key's last sent value and the scan round that last saw it.
type watched struct {
	value []byte
	round uint64
}

func (w *watcher) run(ctx context.Context, c *Catalog) {
	defer close(w.out)
	defer c.hub.remove(w)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ctx.Done():
			return
		case <-w.kick:
		}
		changes, err := w.diff(c)
		if err != nil {
			c.opts.Logger.Warn("discovery: watch scan failed", "prefix", string(w.prefix), "err", err)
			continue
		}
		if len(changes) == 0 {
			continue
		}
		select {
		case w.out <- Event{Changes: changes}:
		case <-ctx.Done():
			return
		case <-c.ctx.Done():
			return
		}
	}
}

// diff scans the prefix and returns what changed since the last scan,
// updating the watcher's state. Values are copied only when they differ. A
// failed scan changes nothing: its changes are reported by the next one.
func (w *watcher) diff(c *Catalog) ([]Change, error) {
	w.round++
	var changes []Change
	err := c.r.Scan(w.prefix, func(k, v []byte) bool {
		if e, ok := w.state[string(k)]; ok {
			e.round = w.round
			if bytes.Equal(e.value, v) {
				return true
			}
		}
		changes = append(changes, Change{Key: string(k), Value: append([]byte{}, v...)})
		return true
	})
	if err != nil {
		return nil, err
	}
	for _, ch := range changes {
		if e := w.state[ch.Key]; e != nil {
			e.value = ch.Value
		} else {
			w.state[ch.Key] = &watched{value: ch.Value, round: w.round}
		}
	}
	for k, e := range w.state {
		if e.round != w.round {
			delete(w.state, k)
			changes = append(changes, Change{Key: k, Deleted: true})
		}
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].Key < changes[j].Key })
	return changes, nil
}

// hub owns the catalog's one change waiter. It runs while at least one
// watcher exists; the watcher list is copy-on-write so that the waiter
// never takes the lock.
type hub struct {
	c        *Catalog
	mu       sync.Mutex
	watchers atomic.Pointer[[]*watcher]
	stop     context.CancelFunc // of the running waiter; nil if none
	done     chan struct{}      // closed when the last waiter started has exited
}

func newHub(c *Catalog) *hub {
	h := &hub{c: c}
	h.watchers.Store(&[]*watcher{})
	return h
}

func (h *hub) add(w *watcher) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := *h.watchers.Load()
	h.watchers.Store(ptr(append(list[:len(list):len(list)], w)))
	if h.stop != nil {
		return nil
	}
	if h.done != nil {
		// A waiter told to stop may still sleep in the futex (up to the
		// wait slice); let it go before starting the next, so that there
		// is never more than one.
		<-h.done
	}
	// The sequence is read here, before Watch scans its baseline.
	seen := h.c.r.Seq()
	ctx, stop := context.WithCancel(h.c.ctx)
	done := make(chan struct{})
	if !h.c.goTracked(func() { defer close(done); h.wait(ctx, seen) }) {
		stop()
		h.watchers.Store(&list)
		return ErrClosed
	}
	h.stop, h.done = stop, done
	return nil
}

func (h *hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := *h.watchers.Load()
	kept := make([]*watcher, 0, len(list))
	for _, x := range list {
		if x != w {
			kept = append(kept, x)
		}
	}
	h.watchers.Store(&kept)
	if len(kept) == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// wait sleeps on the region's change sequence and nudges every watcher
// after each change.
func (h *hub) wait(ctx context.Context, seen uint32) {
	for {
		cur, err := h.c.r.Wait(ctx, seen)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				h.c.opts.Logger.Warn("discovery: change wait failed", "err", err)
			}
			return
		}
		seen = cur
		for _, w := range *h.watchers.Load() {
			select {
			case w.kick <- struct{}{}:
			default: // a nudge is already pending
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

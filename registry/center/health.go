package center

import (
	"fmt"

	"github.com/shmreg/shmreg/internal/backoff"
	"github.com/shmreg/shmreg/registry/internal/wire"

	"sync"
	"sync/atomic"
	"time"
)

// health is whether the center can persist. Every failed store
// transaction refuses its writes with ErrUnavailable (a client fails over
// to the peer on it). Once the store has kept failing for UnhealthyAfter,
// the center is unhealthy: it stops serving subscriptions and closes the
// ones it serves, so that agents follow the peer, which still receives
// every write, instead of staying on a center that cannot take any. A
// nearly full disk lets small transactions through and fails large ones,
// so recovery is judged strictly: the health loop probes the store with a
// large write, at pauses growing from 100ms to 5s, and the center is
// healthy again only once probes succeed and nothing has failed for
// UnhealthyAfter.
type health struct {
	mu       sync.Mutex
	since    time.Time // first failure of the current episode; zero while healthy
	lastFail time.Time
	lastErr  error
	logged   time.Time // when a failure was last logged

	// unhealthy is set while the store has been failing for longer than
	// UnhealthyAfter; subscriptions are refused meanwhile.
	unhealthy atomic.Bool
}

// errNotPersisting is the reply to a subscription on an unhealthy center.
var errNotPersisting = fmt.Errorf("%w: this center cannot persist; use the other center", wire.ErrUnavailable)

// StoreFailed records a failed store transaction (see Front).
func (c *Center) StoreFailed(err error) {
	c.metrics.storeFailures.Inc()
	h := &c.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.since.IsZero() {
		h.since = now
	}
	h.lastFail, h.lastErr = now, err
	if now.Sub(h.logged) >= 10*time.Second {
		h.logged = now
		c.log.Error("store transaction failed: its writes are refused with unavailable", "err", err, "failing_for", now.Sub(h.since).Round(time.Millisecond))
	}
}

// Healthy reports whether the center can persist (nil) or why not.
func (c *Center) Healthy() error {
	h := &c.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		return nil
	}
	return fmt.Errorf("%w: store failing since %s: %v", wire.ErrUnavailable, h.since.Format(time.RFC3339), h.lastErr)
}

// healthLoop turns a store that keeps failing into an unhealthy center and
// brings it back once the store persists again (see health).
func (c *Center) healthLoop() {
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		select {
		case <-time.After(b.Next()):
		case <-c.ctx.Done():
			return
		}
		h := &c.health
		h.mu.Lock()
		since, lastFail := h.since, h.lastFail
		h.mu.Unlock()
		if since.IsZero() {
			b.Reset()
			continue
		}
		now := time.Now()
		if err := c.backend.Probe(); err != nil {
			c.StoreFailed(err)
			if now.Sub(since) >= c.opts.UnhealthyAfter && !h.unhealthy.Load() {
				h.unhealthy.Store(true)
				c.metrics.healthy.Set(0)
				c.log.Error("store failing for too long: this center stops serving subscriptions so that agents follow the peer",
					"failing_for", now.Sub(since).Round(time.Millisecond), "err", err)
				c.closeSubscribers()
			}
			continue
		}
		if now.Sub(lastFail) < c.opts.UnhealthyAfter {
			b.Reset() // the store works now: look again soon
			continue
		}
		h.mu.Lock()
		if h.lastFail.Equal(lastFail) {
			c.log.Info("store persists again: serving writes and subscriptions", "failed_for", now.Sub(h.since).Round(time.Millisecond))
			h.since, h.lastErr = time.Time{}, nil
			h.unhealthy.Store(false)
			c.metrics.healthy.Set(1)
		}
		h.mu.Unlock()
	}
}

// closeSubscribers closes every connection that holds a subscription (not
// the peer's), with an unavailable error, so that its agent fails over.
func (c *Center) closeSubscribers() {
	c.sessMu.Lock()
	var victims []*session
	for s := range c.sessions {
		s.subMu.Lock()
		if len(s.subs) > 0 && s.role != wire.RolePeer {
			victims = append(victims, s)
		}
		s.subMu.Unlock()
	}
	c.sessMu.Unlock()
	for _, s := range victims {
		s.close(errNotPersisting)
	}
}

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// apply writes one pushed batch into the region as one commit, with the
// place (center, revision) recorded in the same commit. first is true for
// the first batch of a subscription: a snapshot then covers every
// subscribed prefix, and entries outside them are stale (an unsubscribed
// prefix) and are deleted too.
func (f *follower) apply(center string, b registry.Batch, first bool) error {
	start := time.Now()
	var c regionCommit
	var diff Resync
	if b.Snapshot {
		diff = f.diffSnapshot(&c, b, first)
	} else {
		f.changes(&c, b)
	}
	if first || b.Snapshot {
		// A resumed stream (first, not a snapshot) brings the region to the
		// subscribed set; a snapshot adds its prefixes.
		if first {
			f.complete = slices.Clone(f.prefixes)
			if b.Snapshot {
				f.complete = normalizePrefixes(b.Prefixes)
			}
		} else {
			f.complete = normalizePrefixes(append(f.complete, b.Prefixes...))
		}
	}
	f.center, f.rev = center, b.Rev
	c.setPlace(f.place())
	err := f.commit(&c, func() {
		for k, rev := range f.refreshed {
			if rev <= b.Rev {
				delete(f.refreshed, k)
			}
		}
		if err := f.saveState(); err != nil {
			f.a.log.Warn("save subscription state", "err", err)
		}
		f.answerWaiters()
		f.a.updateStatus(func(s *Status) {
			s.Center, s.Revision = center, b.Rev
			s.Batches++
			s.LastApply = time.Now()
			s.Held = len(f.held)
			if b.Snapshot {
				diff.At = s.LastApply
				s.LastResync = diff
			}
		})
	})
	if err != nil {
		return err
	}
	f.a.metrics.applySeconds.Observe(time.Since(start).Seconds())
	return nil
}

// Resync describes how a snapshot was applied.
type Resync struct {
	At        time.Time `json:"at"`
	Snapshot  int       `json:"snapshot"`  // live records in the snapshot
	Unchanged int       `json:"unchanged"` // entries left untouched
	Written   int       `json:"written"`   // entries added or rewritten
	Deleted   int       `json:"deleted"`   // entries deleted
	Held      int       `json:"held"`      // deletions held as suspect
}

// place is what the region records: the center and the revision applied,
// or revision 0 while suspect deletions are held, so that an agent
// restarted meanwhile takes a snapshot and judges them again rather than
// resuming past them.
func (f *follower) place() (string, uint64) {
	if len(f.held) > 0 {
		return f.center, 0
	}
	return f.center, f.rev
}

// changes turns a change batch into region writes, in revision order.
func (f *follower) changes(c *regionCommit, b registry.Batch) {
	for i := range b.Records {
		r := &b.Records[i]
		if rev, ok := f.refreshed[r.Key]; ok && r.Rev <= rev {
			continue // a refresh already wrote something newer
		}
		// The center's own word about a held key settles it.
		delete(f.held, r.Key)
		if r.Deleted {
			c.delete(r.Key)
		} else {
			c.put(r.Key, r.Value)
		}
	}
}

// diffSnapshot turns a snapshot into the region writes that make the
// region's entries under the snapshot's prefixes (under everything, if
// whole) equal to it: entries that did not change are not touched, so no
// reader sees them vanish and come back. Deletions that would remove most
// of a service are held (see suspect).
//
// The commit holds the key as a string copied here, never k: the slices
// Scan passes are valid only inside the callback.
func (f *follower) diffSnapshot(c *regionCommit, b registry.Batch, whole bool) (diff Resync) {
	want := make(map[string][]byte, len(b.Records))
	for i := range b.Records {
		if r := &b.Records[i]; !r.Deleted {
			want[r.Key] = r.Value
		}
	}
	seen := make(map[string]bool, len(want))
	var gone []string
	services := make(map[string]int) // instances per service in the region, in scope
	visit := func(k, v []byte) bool {
		key := string(k)
		if seen[key] {
			return true // overlapping prefixes
		}
		seen[key] = true
		if service, _, ok := registry.ParseInstanceKey(key); ok {
			services[service]++
		}
		if wv, ok := want[key]; ok {
			if bytes.Equal(v, wv) {
				diff.Unchanged++
			} else {
				c.put(key, wv)
				diff.Written++
			}
			return true
		}
		if whole && !underAny(key, b.Prefixes) {
			c.delete(key) // no longer subscribed
			diff.Deleted++
			return true
		}
		gone = append(gone, key)
		return true
	}
	scopes := b.Prefixes
	if whole {
		scopes = []string{""}
	}
	for _, p := range scopes {
		if err := f.a.r.Scan([]byte(p), visit); err != nil {
			// The reader is the agent's own; a failure here means the
			// region is unreadable and the commit will fail too.
			f.a.log.Error("scan region", "prefix", p, "err", err)
		}
	}
	for i := range b.Records {
		r := &b.Records[i]
		if !r.Deleted && !seen[r.Key] {
			c.put(r.Key, r.Value)
			diff.Written++
		}
	}
	for k := range want {
		delete(f.held, k) // present again: no longer a held deletion
	}
	del := f.suspect(gone, services)
	for _, key := range del {
		c.delete(key)
	}
	diff.Snapshot = len(want)
	diff.Deleted += len(del)
	diff.Held = len(gone) - len(del)
	return diff
}

// heldDelete is a suspect deletion waiting for confirmation.
type heldDelete struct {
	service string
	until   time.Time
}

// suspect applies the mass-deletion rule to the keys a snapshot would
// delete and returns those to delete now; the others are held.
//
// The rule: if a snapshot would delete more than SuspectShare of the
// instances a service has in the region (counting only services with at
// least SuspectMin instances), none of that service's deletions is applied.
// They are held for SuspectHold (an existing hold keeps its deadline), then
// the agent lists the service at its center and applies what it says. A
// pushed change or a refresh of a held key settles that key at once. Other
// keys (plain key/values) are never held.
func (f *follower) suspect(gone []string, services map[string]int) []string {
	opts := f.a.opts
	deleting := make(map[string]int)
	for _, k := range gone {
		if s, _, ok := registry.ParseInstanceKey(k); ok {
			deleting[s]++
		}
	}
	now := time.Now()
	var out []string
	for _, k := range gone {
		s, _, ok := registry.ParseInstanceKey(k)
		n := services[s]
		if !ok || opts.SuspectShare < 0 || n < opts.SuspectMin || float64(deleting[s]) <= opts.SuspectShare*float64(n) {
			delete(f.held, k)
			out = append(out, k)
			continue
		}
		if _, ok := f.held[k]; !ok {
			f.held[k] = heldDelete{service: s, until: now.Add(opts.SuspectHold)}
		}
	}
	if len(f.held) > 0 {
		f.a.log.Warn("snapshot would delete most of a service: deletions held", "held", len(f.held), "hold", opts.SuspectHold)
	}
	return out
}

// nextHoldDeadline returns the earliest hold deadline.
func (f *follower) nextHoldDeadline() (time.Time, bool) {
	var first time.Time
	for _, h := range f.held {
		if first.IsZero() || h.until.Before(first) {
			first = h.until
		}
	}
	return first, !first.IsZero()
}

// resolveHolds settles the holds that are due: it lists each of their
// services at the center and deletes the held keys the center still does
// not have (rewriting those it has).
func (f *follower) resolveHolds(ctx context.Context, center string) error {
	now := time.Now()
	due := make(map[string][]string) // service -> held keys due
	for k, h := range f.held {
		if !h.until.After(now) {
			due[h.service] = append(due[h.service], k)
		}
	}
	var c regionCommit
	for service, keys := range due {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		recs, err := f.conn.List(lctx, registry.InstanceKey(service, ""))
		cancel()
		if err != nil {
			return fmt.Errorf("agent: confirm held deletions of %s: %w", service, err)
		}
		have := make(map[string][]byte, len(recs))
		for _, r := range recs {
			have[r.Key] = r.Value
		}
		for _, k := range keys {
			delete(f.held, k)
			if v, ok := have[k]; ok {
				c.put(k, v)
			} else {
				c.delete(k)
			}
		}
		f.a.log.Info("held deletions confirmed", "service", service, "keys", len(keys))
	}
	c.setPlace(f.place())
	return f.commit(&c, func() {
		f.a.updateStatus(func(s *Status) { s.Held = len(f.held) })
	})
}

// refresh rewrites one key from the center.
func (f *follower) refresh(ctx context.Context, key string) error {
	if !underAny(key, f.prefixes) {
		return fmt.Errorf("%w: %q", ErrNotSubscribed, key)
	}
	if f.fault != nil {
		return f.fault.error() // nothing but the kept commit may be written (see regionFault)
	}
	if f.conn == nil {
		return ErrNotConnected
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rec, err := f.conn.Get(gctx, key)
	cancel()
	var c regionCommit
	switch {
	case errors.Is(err, registry.ErrNotFound):
		c.delete(key)
	case err != nil:
		return fmt.Errorf("agent: refresh %s: %w", key, err)
	default:
		c.put(key, rec.Value)
		f.refreshed[key] = rec.Rev
	}
	delete(f.held, key)
	c.setPlace(f.place())
	return f.commit(&c, func() {
		f.a.updateStatus(func(s *Status) { s.Held = len(f.held) })
	})
}

package pair

import "time"

// purgeLoop forgets deletes older than the tombstone retention, checking a
// quarter of the retention apart (at most a minute).
func (b *Backend) purgeLoop() {
	every := min(max(b.opts.TombstoneRetention/4, 20*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.purgeTombstones(now)
		}
	}
}

// purgeTombstones submits the purge of every tombstone past retention (the
// committer purges each only if it is still that tombstone).
func (b *Backend) purgeTombstones(now time.Time) {
	var ops []op
	b.mu.RLock()
	for k, r := range b.Recs {
		if r.Deleted && now.Sub(r.Version.Time()) > b.opts.TombstoneRetention {
			ops = append(ops, op{kind: opPurge, key: k, expect: r.Version})
		}
	}
	b.mu.RUnlock()
	if len(ops) > 0 {
		b.submit(&writeReq{ops: ops, done: func([]opResult, error) {}})
	}
}

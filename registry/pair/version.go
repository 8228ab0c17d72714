package pair

import (
	"math"
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// hlc is a hybrid logical clock: monotonic, close to wall time, and never
// behind any version it has seen.
type hlc struct {
	mu   sync.Mutex
	last uint64
	now  func() time.Time
}

func newHLC(now func() time.Time) *hlc {
	if now == nil {
		now = time.Now
	}
	return &hlc{now: now}
}

// Now returns a reading greater than every earlier reading and every
// observed one. It saturates at the largest reading instead of wrapping to
// 1970 (unreachable while every observed reading is bounded; see
// Center.admitVersion).
func (c *hlc) Now() uint64 {
	pt := uint64(c.now().UnixMilli()) << wire.HLCLogicalBits
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.last:
		c.last = pt
	case c.last < math.MaxUint64:
		c.last++ // logical tick; overflowing into the ms part is harmless
	}
	return c.last
}

// Observe moves the clock past a remote reading. Callers bound the reading
// first (Center.admitVersion): this one trusts it.
func (c *hlc) Observe(remote uint64) {
	c.mu.Lock()
	if remote > c.last {
		c.last = remote
	}
	c.mu.Unlock()
}

// limit is the largest reading a remote party may move this clock to: the
// wall clock plus ahead.
func (c *hlc) limit(ahead time.Duration) uint64 {
	return uint64(c.now().Add(ahead).UnixMilli()) << wire.HLCLogicalBits
}

// clockSource says who handed the center a version, for metrics and logs.
type clockSource string

const (
	fromClient clockSource = "client" // a write's after
	fromPeer   clockSource = "peer"   // a replicated or repaired record
)

// admitVersion reports whether a version received from outside may move
// this center's clock, and moves it if so. One that is more than
// MaxClockAhead ahead of the wall clock is refused: counted always, logged
// at most once a minute per source (one misbehaving party must not flood
// the log). Without the bound, one record stamped in the year 2100 would
// stamp every later write of both centers in 2100, and one stamped near
// 2^64 would wrap the clock to 1970 and lose every later write to it.
func (b *Backend) admitVersion(v uint64, src clockSource) bool {
	if v <= b.clock.limit(b.opts.MaxClockAhead) {
		b.clock.Observe(v)
		return true
	}
	b.metrics.clockRefused.WithLabelValues(string(src)).Inc()
	warned := &b.clockWarned[0]
	if src == fromPeer {
		warned = &b.clockWarned[1]
	}
	now := b.clock.now().UnixNano()
	if last := warned.Load(); now-last >= int64(time.Minute) && warned.CompareAndSwap(last, now) {
		b.log.Warn("refusing a version too far ahead of this center's clock (further ones this minute are only counted)",
			"source", string(src), "version_time", wire.Version{HLC: v}.Time(), "max_ahead", b.opts.MaxClockAhead)
	}
	return false
}

// observeClient moves the center's clock past after, the highest version
// the client has seen, so that the write it is about to stamp orders after
// every write the client made before (on either center). A far-ahead after
// is ignored (the write is still made, stamped by this center's clock).
// It reports whether after was followed (false for 0 and for a refused one).
func (b *Backend) observeClient(after uint64) bool {
	return after != 0 && b.admitVersion(after, fromClient)
}

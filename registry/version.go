package registry

import (
	"sync"
	"time"
)

// Version orders updates to a key across both centers: a hybrid logical clock
// reading, ties broken by the id of the center that made the update. Two
// distinct updates never have equal versions, so last-writer-wins picks the
// same winner everywhere.
type Version struct {
	// HLC packs wall-clock milliseconds since the Unix epoch (high 48 bits)
	// and a logical counter (low 16 bits).
	HLC uint64 `msgpack:"hlc"`
	// Origin is the id of the center that accepted the update.
	Origin string `msgpack:"origin"`
}

// Less reports whether v orders before w.
func (v Version) Less(w Version) bool {
	if v.HLC != w.HLC {
		return v.HLC < w.HLC
	}
	return v.Origin < w.Origin
}

// IsZero reports whether v is the zero version (no update).
func (v Version) IsZero() bool { return v.HLC == 0 && v.Origin == "" }

// Time is the wall-clock part of the version.
func (v Version) Time() time.Time { return time.UnixMilli(int64(v.HLC >> 16)) }

const hlcLogicalBits = 16

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
// observed one.
func (c *hlc) Now() uint64 {
	pt := uint64(c.now().UnixMilli()) << hlcLogicalBits
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.last {
		c.last = pt
	} else {
		c.last++ // logical tick; overflowing into the ms part is harmless
	}
	return c.last
}

// Observe moves the clock past a remote reading.
func (c *hlc) Observe(remote uint64) {
	c.mu.Lock()
	if remote > c.last {
		c.last = remote
	}
	c.mu.Unlock()
}

// maxClientAhead bounds how far ahead of this center's wall clock a
// client's After may be for the center to move its clock to it: a version
// the pair could have issued is at most the pair's clock skew ahead, and a
// client must not be able to drag the clock (and every later version's
// time) into the future.
const maxClientAhead = time.Minute

// observeClient moves the center's clock past after, the highest version
// the client has seen, so that the write it is about to stamp orders after
// every write the client made before (on either center).
func (c *Center) observeClient(after uint64) {
	if after == 0 {
		return
	}
	limit := uint64(c.clock.now().Add(maxClientAhead).UnixMilli()) << hlcLogicalBits
	if after > limit {
		// Counted always, logged at most once a minute: one misbehaving
		// client must not flood the log.
		c.metrics.afterIgnored.Inc()
		now := c.clock.now().UnixNano()
		if last := c.afterWarned.Load(); now-last >= int64(time.Minute) && c.afterWarned.CompareAndSwap(last, now) {
			c.log.Warn("ignoring a client's version far ahead of this center's clock (further ones this minute are only counted)", "after", Version{HLC: after}.Time())
		}
		return
	}
	c.clock.Observe(after)
}

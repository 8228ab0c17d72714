package agent

import (
	"math/rand/v2"
	"time"
)

// backoff is the delay before the next attempt at something that keeps
// failing: it doubles from min up to max, each delay jittered by ±25%, and
// starts again from min after reset. The follower keeps one for everything
// it retries (dialing, following, writing the region), so that whatever
// fails, an agent that keeps failing settles at one attempt per max.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // the next delay before jitter; 0 means min
}

// next returns the delay to wait now and doubles the following one.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	}
	d := jitter(b.cur)
	b.cur = min(2*b.cur, b.max)
	return d
}

// reset makes the next delay min again.
func (b *backoff) reset() { b.cur = 0 }

// jitter spreads d by ±25%, so that the agents of many hosts do not retry
// in step.
func jitter(d time.Duration) time.Duration {
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

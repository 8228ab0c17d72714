package registry

import (
	"math/rand/v2"
	"time"
)

// jitter spreads d by ±25%, so that many clients (or both centers) that
// failed together do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// backoff is an exponential pause between retries: each failure doubles
// it up to max; a success (reset) brings it back to min.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) backoff { return backoff{min: min, max: max, cur: min} }

// next returns the pause to take now (jittered) and doubles the next one.
func (b *backoff) next() time.Duration {
	d := jitter(b.cur)
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.min }

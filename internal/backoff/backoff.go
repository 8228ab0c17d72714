// Package backoff spaces out retries: exponential pauses with jitter, so
// that many clients that failed together do not retry in step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter spreads d by ±25%.
func Jitter(d time.Duration) time.Duration {
	return d - d/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Backoff is an exponential pause between retries: each failure doubles it
// up to Max; a success (Reset) brings it back to Min. The zero value is not
// usable: use New.
type Backoff struct {
	min, max, cur time.Duration
}

// New returns a backoff from min to max.
func New(min, max time.Duration) Backoff { return Backoff{min: min, max: max, cur: min} }

// Next returns the pause to take now (jittered) and doubles the next one.
func (b *Backoff) Next() time.Duration {
	d := Jitter(b.cur)
	b.cur = min(2*b.cur, b.max)
	return d
}

// Reset brings the pause back to its minimum.
func (b *Backoff) Reset() { b.cur = b.min }

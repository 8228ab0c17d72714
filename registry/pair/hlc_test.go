package pair

import (
	"testing"
	"time"
)

func TestHLC(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	c := newHLC(func() time.Time { return now })
	a := c.Now()
	b := c.Now() // same millisecond: logical tick
	if b <= a {
		t.Fatal("HLC not monotonic within a millisecond")
	}
	c.Observe(b + 100)
	if d := c.Now(); d <= b+100 {
		t.Fatal("HLC behind an observed reading")
	}
	now = now.Add(-time.Second) // wall clock steps back
	if e := c.Now(); e <= b+100 {
		t.Fatal("HLC went backwards with the wall clock")
	}
}

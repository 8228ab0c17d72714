package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBackoff: the delay doubles from min to max, each jittered by ±25%,
// and reset starts it over.
func TestBackoff(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 80 * time.Millisecond}
	for i, want := range []time.Duration{10, 20, 40, 80, 80, 80} {
		want *= time.Millisecond
		if d := b.next(); d < want*3/4 || d > want*5/4 {
			t.Fatalf("delay %d: %v, want %v ±25%%", i, d, want)
		}
	}
	b.reset()
	if d := b.next(); d < 7500*time.Microsecond || d > 12500*time.Microsecond {
		t.Fatalf("after reset: %v, want 10ms ±25%%", d)
	}
}

// TestFailedFollowsBackOff: a center that accepts the agent and then drops
// it every time (here a proxy that cuts each connection 30ms after it
// opened) gets connections at the backoff's pace, not as fast as the agent
// can reconnect.
func TestFailedFollowsBackOff(t *testing.T) {
	ca, _ := testPair(t)
	p := cuttingProxy(t, ca.Addr().String(), 30*time.Millisecond)
	opts := testOptions(t.TempDir(), []string{p.addr}, "cfg/") // backoff 10ms .. 200ms
	startAgent(t, opts)
	time.Sleep(time.Second)
	// With the backoff the waits are 10, 20, 40, 80, 160, then 200ms (each
	// at least 3/4 of that), after connections of 30ms: at most 9
	// connections in the first second. Without it, one every ~30ms.
	if n := p.accepted.Load(); n > 12 {
		t.Fatalf("the agent connected %d times in 1s to a center that drops it after 30ms, want at most 12", n)
	}
	t.Logf("%d connections in 1s", p.accepted.Load())
}

// proxy forwards connections to a center and cuts each after a while.
type proxy struct {
	addr     string
	accepted atomic.Int64
}

func cuttingProxy(t *testing.T, target string, after time.Duration) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Error(err)
				}
				return
			}
			p.accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				wg.Add(2)
				go func() { defer wg.Done(); io.Copy(s, c) }()
				go func() { defer wg.Done(); io.Copy(c, s) }()
				select {
				case <-time.After(after):
				case <-ctx.Done():
				}
			}()
		}
	}()
	return p
}

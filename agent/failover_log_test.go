package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log sink the agent's goroutines write while the test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLostCenterLogSaysFailover: when the center the agent follows goes
// away while the other is up, the agent's log says which center it lost
// and that it is failing over to the other, not "no center available".
func TestLostCenterLogSaysFailover(t *testing.T) {
	ca, cb := testPair(t)
	addrA, addrB := ca.Addr().String(), cb.Addr().String()
	opts := testOptions(t.TempDir(), []string{addrA, addrB}, "svc/")
	var logs lockedBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	a := startAgent(t, opts)
	eventually(t, "following A", func() error {
		if st := a.Status(); !st.Connected || st.CenterAddr != addrA {
			return errors.New("not on A")
		}
		return nil
	})
	shutdownCenter(t, ca)
	eventually(t, "following B", func() error {
		if st := a.Status(); !st.Connected || st.CenterAddr != addrB {
			return errors.New("not on B")
		}
		return nil
	})
	var lost string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "lost center") {
			lost = l
		}
	}
	if !strings.Contains(lost, `msg="lost center; failing over"`) || !strings.Contains(lost, "addr="+addrA) || !strings.Contains(lost, "to="+addrB) {
		t.Errorf("the log line for the lost center does not say which it was and where the agent goes: %q", lost)
	}
	if strings.Contains(logs.String(), "no center available") {
		t.Errorf("the log says no center is available while B is up:\n%s", logs.String())
	}
}

// TestNoCenterLogSaysItOnce: with neither center up, the agent's log says
// "no center available" once, then why for each center.
func TestNoCenterLogSaysItOnce(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	opts := testOptions(t.TempDir(), []string{addrA, addrB}, "svc/")
	var logs lockedBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	startAgent(t, opts)
	var line string
	eventually(t, "a log line for the failed round", func() error {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "no center reachable") {
				line = l
				return nil
			}
		}
		return errors.New("none yet")
	})
	if n := strings.Count(line, "no center available"); n != 1 || !strings.Contains(line, addrA) || !strings.Contains(line, addrB) {
		t.Errorf("the line says \"no center available\" %d times, or leaves out a center: %q", n, line)
	}
}

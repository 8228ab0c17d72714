package lock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(time.Millisecond)
	}
}

// deadWord is a holder word of a process that is not running: pid 1 with a
// start time that is not pid 1's (pid 1 was recycled, as far as the lock can
// tell).
func deadWord(t *testing.T) uint64 {
	t.Helper()
	start, _, err := procStat(1)
	if err != nil {
		t.Skip("cannot read /proc/1/stat:", err)
	}
	return pack(Holder{Pid: 1, Start: start + 1}, 1)
}

func TestInitAndNewValidate(t *testing.T) {
	_, mem := newLockFile(t)
	big := make([]byte, 2*Size)
	for _, c := range []struct {
		name string
		mem  []byte
	}{
		{"short", mem[:Size-8]},
		{"long", big},
		{"unaligned", big[1 : 1+Size]},
	} {
		if err := Init(c.mem); !errors.Is(err, ErrLayout) {
			t.Errorf("Init(%s) = %v, want ErrLayout", c.name, err)
		}
		if _, err := New(c.mem, Options{}); !errors.Is(err, ErrLayout) {
			t.Errorf("New(%s) = %v, want ErrLayout", c.name, err)
		}
	}
	if _, err := New(make([]byte, Size), Options{}); !errors.Is(err, ErrLayout) {
		t.Errorf("New(uninitialized) = %v, want ErrLayout", err)
	}
	if _, err := New(mem, Options{Timeout: -time.Second}); err == nil {
		t.Error("New accepted a negative timeout")
	}
	rw := mustNew(t, mem, Options{})
	if rw.timeout != DefaultTimeout {
		t.Errorf("default timeout %v, want %v", rw.timeout, DefaultTimeout)
	}
}

func TestLockUnlockAndStats(t *testing.T) {
	_, mem := newLockFile(t)
	rw := mustNew(t, mem, Options{})
	g, err := rw.Lock()
	if err != nil || g.Forced != 0 || g.Recovered != 0 {
		t.Fatalf("Lock = %+v, %v", g, err)
	}
	if st := rw.Stats(); st.Writer != rw.self.Pid || st.Readers != 0 {
		t.Fatalf("Stats while writing = %+v", st)
	}
	if err := rw.Unlock(g); err != nil {
		t.Fatal(err)
	}
	if err := rw.Unlock(g); !errors.Is(err, ErrLockLost) {
		t.Fatalf("second Unlock = %v, want ErrLockLost", err)
	}
	r1, err := rw.RLock()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := rw.RLock()
	if err != nil {
		t.Fatal(err)
	}
	if st := rw.Stats(); st.Writer != 0 || st.Readers != 2 {
		t.Fatalf("Stats with two readers = %+v", st)
	}
	for _, r := range []Grant{r1, r2} {
		if err := rw.RUnlock(r); err != nil {
			t.Fatal(err)
		}
	}
	if st := rw.Stats(); st != (Stats{}) {
		t.Fatalf("Stats when free = %+v, want zero", st)
	}
}

func TestBadGrants(t *testing.T) {
	_, mem := newLockFile(t)
	rw := mustNew(t, mem, Options{})
	w, _ := rw.Lock()
	if err := rw.RUnlock(w); !errors.Is(err, ErrBadGrant) {
		t.Errorf("RUnlock(write grant) = %v", err)
	}
	_ = rw.Unlock(w)
	r, _ := rw.RLock()
	if err := rw.Unlock(r); !errors.Is(err, ErrBadGrant) {
		t.Errorf("Unlock(read grant) = %v", err)
	}
	_ = rw.RUnlock(r)
	if err := rw.Unlock(Grant{}); !errors.Is(err, ErrBadGrant) {
		t.Errorf("Unlock(Grant{}) = %v", err)
	}
	if err := rw.RUnlock(Grant{}); !errors.Is(err, ErrBadGrant) {
		t.Errorf("RUnlock(Grant{}) = %v", err)
	}
}

// TestWriterWaitsForReaders: a writer does not get in while readers hold,
// new readers do not get in while the writer waits, and everyone proceeds
// once the readers leave.
func TestWriterWaitsForReaders(t *testing.T) {
	_, mem := newLockFile(t)
	rw := mustNew(t, mem, Options{Timeout: time.Minute})
	r, err := rw.RLock()
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan Grant)
	go func() {
		g, err := rw.Lock()
		if err != nil {
			t.Error(err)
		}
		wrote <- g
	}()
	waitFor(t, func() bool { return rw.Stats().Writer != 0 }, "writer never claimed the writer word")
	read := make(chan Grant)
	go func() {
		g, err := rw.RLock()
		if err != nil {
			t.Error(err)
		}
		read <- g
	}()
	select {
	case <-wrote:
		t.Fatal("writer got in while a reader held the lock")
	case <-read:
		t.Fatal("a new reader got in while a writer waited")
	case <-time.After(50 * time.Millisecond):
	}
	if err := rw.RUnlock(r); err != nil {
		t.Fatal(err)
	}
	w := <-wrote
	select {
	case <-read:
		t.Fatal("reader got in while the writer held the lock")
	case <-time.After(20 * time.Millisecond):
	}
	if err := rw.Unlock(w); err != nil {
		t.Fatal(err)
	}
	if err := rw.RUnlock(<-read); err != nil {
		t.Fatal(err)
	}
	if st := rw.Stats(); st.Forced != 0 || st.Recovered != 0 {
		t.Fatalf("nothing should have been forced: %+v", st)
	}
}

// TestForcedAfterTimeout: every kind of live holder is forced out after the
// acquirer's Timeout, the count goes up, and the victim's release reports
// ErrLockLost without disturbing the new holder.
func TestForcedAfterTimeout(t *testing.T) {
	for _, c := range []struct {
		name         string
		hold, take   func(*RW) (Grant, error)
		release, rel func(*RW, Grant) error
	}{
		{"writer forces writer", (*RW).Lock, (*RW).Lock, (*RW).Unlock, (*RW).Unlock},
		{"writer forces reader", (*RW).RLock, (*RW).Lock, (*RW).RUnlock, (*RW).Unlock},
		{"reader forces writer", (*RW).Lock, (*RW).RLock, (*RW).Unlock, (*RW).RUnlock},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, mem := newLockFile(t)
			victim := mustNew(t, mem, Options{Timeout: time.Minute})
			forcer := mustNew(t, mem, Options{Timeout: 50 * time.Millisecond})
			held, err := c.hold(victim)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			g, err := c.take(forcer)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < 50*time.Millisecond {
				t.Errorf("forced after %v, before the timeout", took)
			}
			if g.Forced != 1 || g.Recovered != 0 {
				t.Errorf("grant %+v, want Forced 1", g)
			}
			if st := forcer.Stats(); st.Forced != 1 {
				t.Errorf("Stats.Forced = %d, want 1", st.Forced)
			}
			if err := c.release(victim, held); !errors.Is(err, ErrLockLost) {
				t.Errorf("victim's release = %v, want ErrLockLost", err)
			}
			if err := c.rel(forcer, g); err != nil {
				t.Errorf("forcer's release = %v", err)
			}
		})
	}
}

// TestDeadHolderRecoveredAtOnce plants holder words of a process that is not
// running; acquisitions with a long Timeout clear them without waiting.
func TestDeadHolderRecoveredAtOnce(t *testing.T) {
	dead := deadWord(t)
	for _, c := range []struct {
		name string
		addr func(*shared) *uint64
		take func(*RW) (Grant, error)
	}{
		{"dead writer, Lock", func(s *shared) *uint64 { return &s.hdr.writer }, (*RW).Lock},
		{"dead writer, RLock", func(s *shared) *uint64 { return &s.hdr.writer }, (*RW).RLock},
		{"dead reader, Lock", func(s *shared) *uint64 { return &s.readers[77] }, (*RW).Lock},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, mem := newLockFile(t)
			rw := mustNew(t, mem, Options{Timeout: time.Minute})
			atomic.StoreUint64(c.addr(rw.s), dead)
			start := time.Now()
			g, err := c.take(rw)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("recovery took %v", took)
			}
			if g.Recovered != 1 || g.Forced != 0 {
				t.Errorf("grant %+v, want Recovered 1", g)
			}
			if st := rw.Stats(); st.Recovered != 1 || st.Forced != 0 {
				t.Errorf("Stats %+v, want Recovered 1", st)
			}
		})
	}
}

func TestForceUnlock(t *testing.T) {
	_, mem := newLockFile(t)
	rw := mustNew(t, mem, Options{})
	r1, _ := rw.RLock()
	r2, _ := rw.RLock()
	free := 0
	for free == r1.slot || free == r2.slot {
		free++
	}
	atomic.StoreUint64(&rw.s.readers[free], deadWord(t))
	if n := rw.ForceUnlock(); n != 3 {
		t.Fatalf("ForceUnlock cleared %d, want 3", n)
	}
	if st := rw.Stats(); st.Readers != 0 || st.Forced != 2 || st.Recovered != 1 {
		t.Fatalf("Stats after ForceUnlock = %+v", st)
	}
	if err := rw.RUnlock(r1); !errors.Is(err, ErrLockLost) {
		t.Fatalf("RUnlock after ForceUnlock = %v", err)
	}
	g, err := rw.Lock()
	if err != nil || g.Forced != 0 {
		t.Fatalf("Lock after ForceUnlock = %+v, %v", g, err)
	}
}

// TestContextEnds: an acquisition stops waiting when its context ends and
// leaves the lock as it found it, in both phases of a write.
func TestContextEnds(t *testing.T) {
	_, mem := newLockFile(t)
	rw := mustNew(t, mem, Options{Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()

	w, _ := rw.Lock()
	if _, err := rw.RLockContext(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RLockContext behind a writer = %v", err)
	}
	if err := rw.Unlock(w); err != nil {
		t.Fatal(err)
	}

	r, _ := rw.RLock()
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(30 * time.Millisecond); cancel2() }()
	if _, err := rw.LockContext(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("LockContext behind a reader = %v", err)
	}
	if st := rw.Stats(); st.Writer != 0 || st.Readers != 1 {
		t.Fatalf("a cancelled writer left %+v", st)
	}
	if err := rw.RUnlock(r); err != nil {
		t.Fatal(err)
	}
}

func TestReaderTableFull(t *testing.T) {
	_, mem := newLockFile(t)
	rw := mustNew(t, mem, Options{Timeout: 30 * time.Millisecond})
	var held []Grant
	for range Readers {
		g, err := rw.RLock()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, g)
	}
	if _, err := rw.RLock(); !errors.Is(err, ErrNoReaderSlot) {
		t.Fatalf("RLock on a full table = %v", err)
	}
	if err := rw.RUnlock(held[5]); err != nil {
		t.Fatal(err)
	}
	g, err := rw.RLock()
	if err != nil || g.slot != held[5].slot {
		t.Fatalf("RLock after a release = %+v, %v", g, err)
	}
}

// TestMutualExclusionGoroutines hammers one lock through two handles from
// many goroutines. The data it protects is plain memory, so the race
// detector checks that the lock orders every access (sync/atomic gives it
// the happens-before edges).
func TestMutualExclusionGoroutines(t *testing.T) {
	mem := heapLock(t)
	handles := []*RW{mustNew(t, mem, Options{Timeout: time.Minute}), mustNew(t, mem, Options{Timeout: time.Minute})}
	const writers, readers, iters = 4, 4, 300
	var a, b int // protected by the lock: always equal outside a write
	var violations atomic.Int64
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			rw := handles[i%2]
			for range iters {
				g, err := rw.Lock()
				if err != nil {
					t.Error(err)
					return
				}
				a++
				if a != b+1 {
					violations.Add(1)
				}
				b = a
				if err := rw.Unlock(g); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range readers {
		wg.Go(func() {
			rw := handles[i%2]
			for range iters {
				g, err := rw.RLock()
				if err != nil {
					t.Error(err)
					return
				}
				if a != b {
					violations.Add(1)
				}
				if err := rw.RUnlock(g); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d violations", v)
	}
	if a != writers*iters {
		t.Fatalf("a = %d, want %d", a, writers*iters)
	}
	if st := handles[0].Stats(); st != (Stats{}) {
		t.Fatalf("Stats after the run = %+v, want zero (nothing forced, nothing held)", st)
	}
}

// TestClockRestartsOnNewHolder: the timeout measures how long one holder
// stands in the way, not the whole wait. Two holders in a row, each well
// under the timeout, are waited for, not forced, although together they
// exceed it.
func TestClockRestartsOnNewHolder(t *testing.T) {
	mem := heapLock(t)
	waiter := mustNew(t, mem, Options{Timeout: time.Second})
	other := mustNew(t, mem, Options{})
	first, second := other.nextWord(), other.nextWord()
	atomic.StoreUint64(&other.s.hdr.writer, first)
	go func() {
		time.Sleep(600 * time.Millisecond)
		atomic.CompareAndSwapUint64(&other.s.hdr.writer, first, second)
		other.wake()
		time.Sleep(600 * time.Millisecond)
		atomic.CompareAndSwapUint64(&other.s.hdr.writer, second, 0)
		other.wake()
	}()
	start := time.Now()
	g, err := waiter.RLock()
	if err != nil {
		t.Fatal(err)
	}
	if g.Forced != 0 {
		t.Fatalf("forced a holder after %v although none held for the 1s timeout", time.Since(start))
	}
}

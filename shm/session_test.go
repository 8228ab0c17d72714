package shm

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestSession: a Session reads what the Reader reads, allocates like it,
// and refuses reads once closed.
func TestSession(t *testing.T) {
	opts := testOptions(t)
	opts.Slots = 1 // so that "the slot went back" below means something
	w, r := openPair(t, opts)
	for i := 0; i < 100; i++ {
		if err := w.Put([]byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	s := newSession(t, r)
	for i := 0; i < 100; i++ {
		key := []byte(fmt.Sprintf("k%03d", i))
		got, err := s.Get(key)
		if err != nil || string(got) != fmt.Sprint("v", i) {
			t.Fatalf("Session.Get(%s) = %q, %v", key, got, err)
		}
		called := false
		err = s.View(key, func(v []byte) error { called = string(v) == fmt.Sprint("v", i); return nil })
		if err != nil || !called {
			t.Fatalf("Session.View(%s): %v, saw the value: %v", key, err, called)
		}
	}
	if _, err := s.Get([]byte("absent")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
	}
	sentinel := errors.New("from fn")
	if err := s.View([]byte("k001"), func([]byte) error { return sentinel }); err != sentinel {
		t.Fatalf("View returned %v, want fn's error", err)
	}

	key := []byte("k042")
	if n := testing.AllocsPerRun(1000, func() { s.Get(key) }); n != 1 {
		t.Fatalf("Session.Get allocates %v times per call, want 1 (the copy)", n)
	}
	fn := func(v []byte) error { return nil }
	if n := testing.AllocsPerRun(1000, func() { s.View(key, fn) }); n != 0 {
		t.Fatalf("Session.View allocates %v times per call, want 0", n)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Get(key); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on a closed session = %v, want ErrClosed", err)
	}
	// The only slot went back to the reader, which reads with it.
	if got, err := r.Get(key); err != nil || string(got) != "v42" {
		t.Fatalf("Reader.Get after Session.Close = %q, %v", got, err)
	}
}

// TestSessionsNeverShareASlot: closing a session twice gives its slot back
// once, so the next two sessions hold two slots.
func TestSessionsNeverShareASlot(t *testing.T) {
	_, r := openPair(t, testOptions(t))
	s := newSession(t, r)
	s.Close()
	s.Close()
	a := newSession(t, r)
	defer a.Close()
	b := newSession(t, r)
	defer b.Close()
	if a.h == b.h || a.h.i == b.h.i {
		t.Fatalf("two open sessions share reader slot %d", a.h.i)
	}
}

// TestSessionReentry: a read from inside a View's callback on the same
// session does not end the outer read's pin, and a Close from inside the
// callback takes effect when the View returns.
func TestSessionReentry(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	for _, k := range []string{"a", "b"} {
		if err := w.Put([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	s := newSession(t, r)
	err := s.View([]byte("a"), func(va []byte) error {
		if got, err := s.Get([]byte("b")); err != nil || string(got) != "vb" {
			t.Fatalf("nested Get = %q, %v", got, err)
		}
		if s.h.slot.epoch == 0 {
			t.Fatal("the nested read left the outer read's slot idle")
		}
		if string(va) != "va" {
			t.Fatalf("outer value = %q", va)
		}
		s.Close()
		if s.h.slot.epoch == 0 {
			t.Fatal("Close inside the callback idled the slot under the read")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.h.slot.epoch != 0 {
		t.Fatalf("slot epoch %d after the View returned, want idle", s.h.slot.epoch)
	}
	if _, err := s.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after a Close inside the callback = %v, want ErrClosed", err)
	}
}

// TestSessionCallbackPanics: a callback's panic is the caller's; the
// session still reads correctly afterwards (through the Reader), and its
// pinned slot is forced free after the lease, so memory reuse resumes.
func TestSessionCallbackPanics(t *testing.T) {
	_, w, r := leasedPair(t, 100*time.Millisecond)
	churn(t, w, 500, 1)
	s := newSession(t, r)
	panicInView(t, s, "k00001")
	want, err := r.Get([]byte("k00002"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get([]byte("k00002")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get after the panic = %q, %v", got, err)
	}
	churnUntilForced(t, w)
	s.Close()
	if _, err := s.Get([]byte("k00002")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}

// TestSessionAfterReaderClose: a closed Reader's sessions, old and new,
// report ErrClosed.
func TestSessionAfterReaderClose(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	if err := w.Put([]byte("a"), []byte("va")); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, r)
	r.Close()
	if _, err := s.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get through a session of a closed reader = %v, want ErrClosed", err)
	}
	s.Close()
	if _, err := r.Session(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Session on a closed reader = %v, want ErrClosed", err)
	}
}

// TestSessionFollowsCompaction: a session open across a compaction (a new
// file renamed over the old) moves to the new file at its next read,
// without an error.
func TestSessionFollowsCompaction(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	if err := w.Put([]byte("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, r)
	defer s.Close()
	if _, err := s.Get([]byte("before")); err != nil {
		t.Fatal(err)
	}
	old := r.cur.Load()
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("after"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"before": "1", "after": "2"} {
		got, err := s.Get([]byte(key))
		if err != nil || string(got) != want {
			t.Fatalf("Get(%s) after compaction = %q, %v", key, got, err)
		}
	}
	if r.cur.Load() == old {
		t.Fatal("the session's reader did not move to the compacted file")
	}
}

// TestSessionEvicted: a session read that outlives the lease is forced out
// of its slot and reports ErrEvicted; the session reads normally afterwards.
func TestSessionEvicted(t *testing.T) {
	_, w, r := leasedPair(t, 100*time.Millisecond)
	churn(t, w, 500, 1)
	s := newSession(t, r)
	defer s.Close()
	inside, release, errc := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		errc <- s.View([]byte("k00001"), func([]byte) error { close(inside); <-release; return nil })
	}()
	<-inside
	churnUntilForced(t, w)
	close(release)
	if err := <-errc; !errors.Is(err, ErrEvicted) {
		t.Fatalf("stuck Session.View returned %v, want ErrEvicted", err)
	}
	if _, err := s.Get([]byte("k00001")); err != nil {
		t.Fatalf("Get after eviction: %v", err)
	}
}

// TestIdleSessionHoldsNothing: an open session between reads does not hold
// memory reuse back, with a lease far longer than the test.
func TestIdleSessionHoldsNothing(t *testing.T) {
	_, w, r := leasedPair(t, time.Hour)
	churn(t, w, 500, 1)
	s := newSession(t, r)
	defer s.Close()
	if _, err := s.Get([]byte("k00001")); err != nil {
		t.Fatal(err)
	}
	churn(t, w, 500, 4)
	if st := w.Stat(); st.ReusableBytes == 0 && len(st.FreeByClass) == 0 {
		t.Fatalf("nothing became reusable while the session sat idle: %+v", st)
	}
}

// TestDroppedSessionsGiveSlotsBack: sessions dropped without Close return
// their slots when collected, so a reader with 4 slots can open 40 of them
// one after another.
func TestDroppedSessionsGiveSlotsBack(t *testing.T) {
	opts := testOptions(t)
	opts.Slots = 4
	w, r := openPair(t, opts)
	if err := w.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		var s *Session
		var err error
		for try := 0; ; try++ {
			if s, err = r.Session(); err == nil {
				break
			}
			if !errors.Is(err, ErrNoSlots) || try == 100 {
				t.Fatalf("session %d: %v", i, err)
			}
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
		if got, err := s.Get([]byte("k")); err != nil || string(got) != "v" {
			t.Fatalf("session %d: Get = %q, %v", i, got, err)
		}
	}
}

// newSession opens a Session on r, failing the test if it cannot.
func newSession(t *testing.T, r *Reader) *Session {
	t.Helper()
	s, err := r.Session()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// leasedPair opens a writer and a reader on a 4 MiB region with the given
// read lease.
func leasedPair(t *testing.T, lease time.Duration) (Options, *Writer, *Reader) {
	t.Helper()
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: lease}
	w, r := openPair(t, opts)
	return opts, w, r
}

// panicInView makes a View on s whose callback panics, and checks that the
// panic reaches the caller unchanged.
func panicInView(t *testing.T, s *Session, key string) {
	t.Helper()
	defer func() {
		if p := recover(); p != "boom" {
			t.Fatalf("recovered %v, want the callback's panic", p)
		}
	}()
	s.View([]byte(key), func([]byte) error { panic("boom") })
}

// TestReaderViewCallbackPanics: Reader.View ends its read without a deferred
// call; a callback's panic still reaches the caller unchanged, the Reader
// keeps reading, and the slot the panicking read kept stops holding memory
// back: the writer forces it after the lease, or the garbage collector
// releases it with its handle, whichever comes first.
func TestReaderViewCallbackPanics(t *testing.T) {
	_, w, r := leasedPair(t, 100*time.Millisecond)
	churn(t, w, 500, 1)
	pinned := r.Generation() // the panicking read's epoch
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the callback's panic", p)
			}
		}()
		r.View([]byte("k00001"), func([]byte) error { panic("boom") })
	}()
	held := 0
	for i := 0; i < w.ctl.slots; i++ {
		if sl := w.ctl.slot(i); atomic.LoadUint64(&sl.owner) != 0 && atomic.LoadUint64(&sl.epoch) >= pinned {
			held++
		}
	}
	if held != 1 {
		t.Fatalf("%d slots hold the panicking read's epoch, want 1 (the read must stay pinned, not look ended)", held)
	}
	for i := 0; i < 100; i++ {
		if _, err := r.Get([]byte("k00002")); err != nil {
			t.Fatalf("Get %d after the panic: %v", i, err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		churn(t, w, 500, 1)
		st := w.Stat()
		if st.OldestReaderEpoch > pinned {
			t.Logf("oldest reader epoch %d past the pinned %d (forced %d)", st.OldestReaderEpoch, pinned, st.SlotsForced)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("memory reuse never resumed after the panicking read: %+v", st)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

package shm

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestSession: a Session reads what the Reader reads, allocates like it,
// and refuses reads once closed.
func TestSession(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	for i := 0; i < 100; i++ {
		if err := w.Put([]byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := r.Session()
	if err != nil {
		t.Fatal(err)
	}
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
	// The slot went back to the reader, which still reads.
	if got, err := r.Get(key); err != nil || string(got) != "v42" {
		t.Fatalf("Reader.Get after Session.Close = %q, %v", got, err)
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
	s, err := r.Session()
	if err != nil {
		t.Fatal(err)
	}
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
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: 100 * time.Millisecond}
	w, r := openPair(t, opts)
	churn(t, w, 500, 1)
	s, err := r.Session()
	if err != nil {
		t.Fatal(err)
	}
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
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: time.Hour}
	w, r := openPair(t, opts)
	churn(t, w, 500, 1)
	s, err := r.Session()
	if err != nil {
		t.Fatal(err)
	}
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
		if st := w.Stat(); st.ReadersLive > 4 {
			t.Fatalf("%d slots live with 4 in the file", st.ReadersLive)
		}
	}
}

package shm

import (
	"bytes"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestForcedThenDeadReaderIsReaped: a reader forced past its lease and then
// killed (SIGKILL) leaves a FORCED slot with a dead owner; the writer reaps
// it and reuse goes on.
func TestForcedThenDeadReaderIsReaped(t *testing.T) {
	w, cmd := writerWithReaderProcess(t, "stuck-reader", 200*time.Millisecond)
	churnUntilForced(t, w)
	cmd.Process.Kill()
	cmd.Wait()
	st0 := w.Stat()
	t.Logf("after kill: gen %d oldest %d retired %d reusable %d compactions %d", st0.Generation, st0.OldestReaderEpoch, st0.RetiredBytes, st0.ReusableBytes, st0.Compactions)
	for i := 0; i < 60; i++ {
		churn(t, w, 500, 1)
	}
	st := w.Stat()
	t.Logf("60 rounds later: gen %d oldest %d retired %d reusable %d compactions %d reaped %d readersLive %d", st.Generation, st.OldestReaderEpoch, st.RetiredBytes, st.ReusableBytes, st.Compactions, st.SlotsReaped, st.ReadersLive)
	if st.SlotsReaped == 0 {
		t.Errorf("the dead reader's slot was never reaped: %+v", st)
	}
	if st.OldestReaderEpoch+30 < st.Generation {
		t.Errorf("reuse stalled by a dead reader's forced slot: oldest epoch %d, generation %d, compactions %d->%d", st.OldestReaderEpoch, st.Generation, st0.Compactions, st.Compactions)
	}
}

// TestCloseWhileReading: closing a reader while other goroutines read
// through it neither crashes (reads in flight keep their mappings until the
// lease passes) nor fails them with anything but ErrClosed.
func TestCloseWhileReading(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 4 << 20}
	w, r := openPair(t, opts)
	churn(t, w, 100, 1)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := r.Get([]byte("k00001")); err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrCorrupt) {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	r.Close()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
}

// TestForcedSlotHoldsNothingBack: a read stuck in a View callback is forced
// once; from then on its slot holds nothing back (the read will discard
// what it read), so memory retired later is still reused while it stays
// stuck.
func TestForcedSlotHoldsNothingBack(t *testing.T) {
	_, w, r := leasedPair(t, 100*time.Millisecond)
	churn(t, w, 500, 1)
	finish := blockInView(t, r, "k00001")
	churnUntilForced(t, w)
	st0 := w.Stat()
	for i := 0; i < 40; i++ {
		churn(t, w, 500, 1)
		time.Sleep(10 * time.Millisecond) // 4 leases in all
	}
	st := w.Stat()
	finish()
	t.Logf("forced at gen ~%d (oldest %d); 40 commits later gen %d oldest %d retired %d reusable %d compactions %d->%d forced %d",
		st0.Generation, st0.OldestReaderEpoch, st.Generation, st.OldestReaderEpoch, st.RetiredBytes, st.ReusableBytes, st0.Compactions, st.Compactions, st.SlotsForced)
	if st.OldestReaderEpoch+20 < st.Generation {
		t.Errorf("a forced slot still pins reuse: oldest %d, generation %d", st.OldestReaderEpoch, st.Generation)
	}
}

// TestSplitDecomposesIntoClasses: a block of any class split for any
// smaller class leaves a remainder made of whole, aligned class-sized pieces.
func TestSplitDecomposesIntoClasses(t *testing.T) {
	for want := 0; want < numClasses; want++ {
		for c := want; c < numClasses; c++ {
			size, w := classSize(c), classSize(want)
			at, rest := w, size-w
			for rest > 0 {
				pc := largestClassWithin(rest)
				ps := classSize(pc)
				if pc < 0 || ps > rest || ps%8 != 0 || at%8 != 0 {
					t.Fatalf("split %d from %d: piece class %d size %d rest %d", w, size, pc, ps, rest)
				}
				at += ps
				rest -= ps
			}
			if at != size {
				t.Fatalf("split %d from %d ends at %d", w, size, at)
			}
		}
	}
}

// TestReopenedWriterStartsWithEmptyFreeLists: a writer's free lists live in
// its memory, so a new writer reports none of the last writer's.
func TestReopenedWriterStartsWithEmptyFreeLists(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	churn(t, w, 300, 8)
	st := w.Stat()
	w.Close()
	w2, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	st2 := w2.Stat()
	t.Logf("before close: reusable %d retired %d garbage %d live %d; reopened: reusable %d classes %d retired %d compactions %d->%d",
		st.ReusableBytes, st.RetiredBytes, st.GarbageBytes, st.LiveBytes, st2.ReusableBytes, len(st2.FreeByClass), st2.RetiredBytes, st.Compactions, st2.Compactions)
	if st2.Compactions == st.Compactions && (st2.ReusableBytes != 0 || st2.RetiredBytes != 0) {
		t.Errorf("a reopened writer reports the last writer's free lists: reusable %d, retired %d, but its own lists are empty", st2.ReusableBytes, st2.RetiredBytes)
	}
}

// TestReadOutlivesClose: a View whose callback is still running when its
// Reader is closed and the read lease has passed (so the control file and
// the data are released) ends with an error instead of crashing the
// process, and its slot is back in the control file for other readers.
// Likewise a Session closed long after its Reader.
func TestReadOutlivesClose(t *testing.T) {
	opts, w, r := leasedPair(t, 50*time.Millisecond)
	churn(t, w, 100, 1)
	s := newSession(t, r)
	finish := blockInView(t, r, "k00001")
	r.Close()
	time.Sleep(4 * opts.ReadLease) // the lease passes: r releases everything
	if err := finish(); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrEvicted) {
		t.Fatalf("a read that outlived its Reader's Close returned %v, want ErrClosed or ErrEvicted", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Nothing of r's is left holding a slot.
	if st := w.Stat(); st.ReadersLive != 0 {
		t.Fatalf("%d reader slots still live after the reader closed", st.ReadersLive)
	}
}

// TestReadOutlivesCompaction: a View callback still running, and still
// reading its value, well past the read lease after the region moved to a
// new file: the old file stays mapped under it (the process does not
// crash), and the value it sees is the one it was given, unless the read
// reports ErrEvicted.
func TestReadOutlivesCompaction(t *testing.T) {
	opts, w, r := leasedPair(t, 50*time.Millisecond)
	churn(t, w, 100, 1)
	want, err := r.Get([]byte("k00001"))
	if err != nil {
		t.Fatal(err)
	}
	inside, release, errc := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	var seen []byte
	go func() {
		errc <- r.View([]byte("k00001"), func(v []byte) error {
			close(inside)
			<-release
			seen = append(seen, v...) // reads the old file, long after the lease
			return nil
		})
	}()
	<-inside
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get([]byte("k00002")); err != nil { // moves r to the new file
		t.Fatal(err)
	}
	superseded := func() int {
		st, err := r.Stat()
		if err != nil {
			t.Fatal(err)
		}
		return st.SupersededMapped
	}
	time.Sleep(6 * opts.ReadLease) // several sweeps of the old mapping
	if superseded() == 0 {
		t.Fatal("the old file was unmapped under a read still running on it")
	}
	close(release)
	err = <-errc
	switch {
	case errors.Is(err, ErrEvicted):
	case err != nil:
		t.Fatalf("View = %v", err)
	case !bytes.Equal(seen, want):
		t.Fatalf("the read saw %q, want %q", seen, want)
	}
	// Once the read has ended, the old mapping goes.
	deadline := time.Now().Add(5 * time.Second)
	for superseded() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the old file is still mapped after the read ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloseAfterReadsReleasesEverything: a Close once every read has ended
// (with idle handles spread over processors' pool caches and an idle
// Session) releases the slots and unmaps the files: nothing is kept for
// stragglers that do not exist.
func TestCloseAfterReadsReleasesEverything(t *testing.T) {
	opts, w, r := leasedPair(t, 50*time.Millisecond)
	churn(t, w, 100, 1)
	s := newSession(t, r)
	if _, err := s.Get([]byte("k00001")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if _, err := r.Get([]byte("k00002")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	r.Close()
	time.Sleep(4 * opts.ReadLease)
	if r.detached.Load() {
		t.Fatal("Close kept zero pages for reads that had all ended")
	}
	if st := w.Stat(); st.ReadersLive != 0 {
		t.Fatalf("%d reader slots still live after Close", st.ReadersLive)
	}
	s.Close()
}

// TestStuckReadPinsOnlyItsFile: a read stuck on one file (a Session whose
// callback panicked) keeps that file mapped, and only that one, through
// later compactions.
func TestStuckReadPinsOnlyItsFile(t *testing.T) {
	opts, w, r := leasedPair(t, 50*time.Millisecond)
	churn(t, w, 100, 1)
	s := newSession(t, r)
	panicInView(t, s, "k00001")
	for i := 0; i < 4; i++ {
		if err := w.Compact(); err != nil {
			t.Fatal(err)
		}
		churn(t, w, 100, 1) // and the writer forces the stuck slot
		if _, err := r.Get([]byte("k00002")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(6 * opts.ReadLease)
	if _, err := r.Get([]byte("k00002")); err != nil { // a sweep ran meanwhile
		t.Fatal(err)
	}
	st, err := r.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.SupersededMapped != 1 {
		t.Fatalf("%d superseded files mapped, want 1 (the stuck read's)", st.SupersededMapped)
	}
	// The spent session must stay reachable until here: a collected one
	// gives its slot back, and then nothing pins the file.
	runtime.KeepAlive(s)
}

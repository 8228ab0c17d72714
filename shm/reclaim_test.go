package shm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"testing"
	"time"
)

func TestSizeClasses(t *testing.T) {
	prev := uint64(0)
	for class := 0; class < numClasses; class++ {
		size := classSize(class)
		if size <= prev || size%8 != 0 {
			t.Fatalf("class %d has size %d after %d", class, size, prev)
		}
		got, c, ok := sizeClass(size)
		if !ok || got != size || c != class {
			t.Fatalf("sizeClass(%d) = %d, %d, %v; want %d, %d", size, got, c, ok, size, class)
		}
		if got, c, _ := sizeClass(prev + 1); got != size || c != class {
			t.Fatalf("sizeClass(%d) = %d (class %d), want %d (class %d)", prev+1, got, c, size, class)
		}
		if prev > 64 && size > prev+prev/4+8 {
			t.Fatalf("class %d wastes more than a quarter: %d after %d", class, size, prev)
		}
		prev = size
	}
	if prev != maxClassSize {
		t.Fatalf("last class is %d, want %d", prev, maxClassSize)
	}
	if _, _, ok := sizeClass(maxClassSize + 1); ok {
		t.Fatal("a block above the largest class was given a class")
	}
}

// churn updates n keys rounds times with values of varying sizes.
func churn(t *testing.T, w *Writer, n, rounds int) {
	t.Helper()
	for r := 0; r < rounds; r++ {
		var b Batch
		for i := 0; i < n; i++ {
			b.Put([]byte(fmt.Sprintf("k%05d", i)), bytes.Repeat([]byte{byte(r)}, 50+(i*7+r*13)%300))
		}
		if err := w.Commit(&b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMemoryIsReused: rewriting the same keys over and over (small commits
// of values of varying sizes, deletes and re-inserts), with a reader reading
// along, settles instead of growing: retired blocks come back through the
// free lists once the reader has moved on. The lease is far longer than
// the test, so reuse owes nothing to forcing slots: an idle slot holds no
// epoch.
func TestMemoryIsReused(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: time.Hour}
	w, r := openPair(t, opts)
	const keys = 2000
	rng := rand.New(rand.NewPCG(9, 9))
	var fill Batch
	for i := 0; i < keys; i++ {
		fill.Put([]byte(fmt.Sprintf("k%05d", i)), bytes.Repeat([]byte{1}, 20+rng.IntN(400)))
	}
	if err := w.Commit(&fill); err != nil {
		t.Fatal(err)
	}
	base := w.Stat()
	maxUsed, settled := uint64(0), uint64(0)
	for c := 0; c < 900; c++ { // 900 commits of 100 changes: 45 rewrites of every key
		var b Batch
		for i := 0; i < 100; i++ {
			k := []byte(fmt.Sprintf("k%05d", rng.IntN(keys)))
			if rng.IntN(10) == 0 {
				b.Delete(k)
				continue
			}
			b.Put(k, bytes.Repeat([]byte{byte(c)}, 20+rng.IntN(400)))
		}
		if err := w.Commit(&b); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Get([]byte("k00001")); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if c == 300 {
			settled = w.Stat().UsedBytes
		}
		if c >= 300 {
			maxUsed = max(maxUsed, w.Stat().UsedBytes)
		}
	}
	st := w.Stat()
	if st.Compactions != base.Compactions {
		t.Fatalf("region was rebuilt %d times: memory was not reused", st.Compactions-base.Compactions)
	}
	// Without reuse the 45 rewrites (about 20 MB of values) could not fit
	// in the 4 MiB file without rebuilding it (checked above); with reuse the
	// pool stays within a few commits' worth of values of the live data.
	if maxUsed > 6*base.UsedBytes {
		t.Fatalf("used bytes grew from %d to %d after settling; first fill used %d; now %+v", settled, maxUsed, base.UsedBytes, w.Stat())
	}
	t.Logf("first fill used %d bytes; settled at %d, at most %d over 30 more rewrites (%.2fx the first fill); live now %d, retired %d, reusable %d",
		base.UsedBytes, settled, maxUsed, float64(maxUsed)/float64(base.UsedBytes), st.LiveBytes, st.RetiredBytes, st.ReusableBytes)
	rep, err := Fsck("r", opts)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("Fsck: %v %q", err, rep.Problems)
	}
}

// TestStuckReaderIsEvicted: a read that outlives the lease is forced out of
// its slot so memory can be reused, and the read reports ErrEvicted instead
// of what it saw.
func TestStuckReaderIsEvicted(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: 100 * time.Millisecond}
	w, r := openPair(t, opts)
	churn(t, w, 500, 1)
	finish := blockInView(t, r, "k00001")
	churnUntilForced(t, w)
	if err := finish(); !errors.Is(err, ErrEvicted) {
		t.Fatalf("stuck View returned %v, want ErrEvicted", err)
	}
	// The reader is usable again afterwards.
	if _, err := r.Get([]byte("k00001")); err != nil {
		t.Fatalf("Get after eviction: %v", err)
	}
}

// TestDeadReaderIsReaped: a reader process killed with SIGKILL in the middle
// of a read, so that its slot holds an old epoch, does not hold memory back:
// the writer sees its byte lock gone and clears the slot.
func TestDeadReaderIsReaped(t *testing.T) {
	w, cmd := writerWithReaderProcess(t, "stuck-reader", time.Hour)
	// While the child is alive and inside its read, nothing retired after
	// its epoch may be reused.
	before := w.Stat().ReusableBytes
	churn(t, w, 500, 4)
	if st := w.Stat(); st.ReusableBytes > before || st.SlotsReaped != 0 {
		t.Fatalf("memory was reused under a live read: before %d, now %+v", before, st)
	}
	cmd.Process.Kill()
	cmd.Wait()
	churnUntilReaped(t, w)
}

// churnUntilReaped rewrites entries until the writer has reaped a dead
// reader's slot, and checks that memory became reusable.
func churnUntilReaped(t *testing.T, w *Writer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Stat().SlotsReaped == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the dead reader's slot was never reaped: %+v", w.Stat())
		}
		churn(t, w, 500, 1)
	}
	if st := w.Stat(); st.ReusableBytes == 0 && len(st.FreeByClass) == 0 {
		t.Fatalf("nothing became reusable after the reap: %+v", st)
	}
}

// TestIdleReaderHoldsNothing: a live reader process that read once and then
// sits idle does not hold memory reuse back, even with a lease far longer
// than the test: its slot returns to 0 when each read ends.
func TestIdleReaderHoldsNothing(t *testing.T) {
	w, _ := writerWithReaderProcess(t, "idle-reader", time.Hour)
	before := w.Stat()
	churn(t, w, 500, 4)
	st := w.Stat()
	if st.ReadersLive == 0 {
		t.Fatalf("the idle reader's slot is not live: %+v", st)
	}
	// With the idle slot at its last read's epoch, the oldest epoch would
	// stay at or below the generation it read at.
	if st.OldestReaderEpoch <= before.Generation {
		t.Fatalf("an idle reader held reuse back: oldest epoch %d, generation before the churn %d", st.OldestReaderEpoch, before.Generation)
	}
	if st.SlotsForced != 0 || st.SlotsReaped != 0 {
		t.Fatalf("reuse needed forcing or reaping: %+v", st)
	}
}

// TestFreeBlocksOfOtherClassesAreSplit: when the cursors have met and the
// free bytes sit in blocks of other sizes, new entries are carved out of
// them instead of rebuilding the region.
func TestFreeBlocksOfOtherClassesAreSplit(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 1 << 20, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Long keys and large values: the freed blocks are larger than any
	// the small entries below need, in both areas.
	big := bytes.Repeat([]byte("B"), 8000)
	bigKey := func(i int) []byte { return []byte(fmt.Sprintf("big/%04d/%s", i, bytes.Repeat([]byte("k"), 500))) }
	var b Batch
	for i := 0; i < 100; i++ {
		b.Put(bigKey(i), big)
	}
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	for i := 0; i < 100; i++ {
		b.Delete(bigKey(i))
	}
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	// 350 entries of 1200-byte values (class 1280, of which none was
	// freed): far more than the bytes left between the cursors. (Few keys
	// and tombstones, so that the index is never rebuilt: a new table
	// larger than every free block needs the cursors or a rebuild.)
	val := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1200) }
	for i := 0; i < 350; i++ {
		if err := w.Put([]byte(fmt.Sprintf("small/%05d", i)), val(i)); err != nil {
			t.Fatal(err)
		}
	}
	st := w.Stat()
	if st.Compactions != 0 {
		t.Fatalf("the region was rebuilt although its free blocks had room: %+v", st)
	}
	if st.FreeBytes > 64<<10 {
		t.Fatalf("the cursors never met (%d bytes between them): the test did not need the free blocks", st.FreeBytes)
	}
	r, err := Open("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < 350; i++ {
		v, err := r.Get([]byte(fmt.Sprintf("small/%05d", i)))
		if err != nil || !bytes.Equal(v, val(i)) {
			t.Fatalf("small/%05d: %.20q %v", i, v, err)
		}
	}
	if rep, err := Fsck("r", opts); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("Fsck: %v %q", err, rep.Problems)
	}
}

// blockInView starts a View of key that stays inside its callback, waits
// until it is there, and returns a function that lets it finish and returns
// its error.
func blockInView(t *testing.T, r *Reader, key string) (finish func() error) {
	t.Helper()
	inside := make(chan struct{})
	release := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- r.View([]byte(key), func(v []byte) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	return func() error { close(release); return <-errc }
}

// churnUntilForced rewrites entries until the writer has forced a reader
// slot free.
func churnUntilForced(t *testing.T, w *Writer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for w.Stat().SlotsForced == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no reader slot was ever forced")
		}
		churn(t, w, 500, 1)
		time.Sleep(10 * time.Millisecond)
	}
}

// writerWithReaderProcess opens a writer on a fresh region of 500 entries
// and starts a reader process in role (one that says "read" once it has
// read), killed at the end of the test.
func writerWithReaderProcess(t *testing.T, role string, lease time.Duration) (*Writer, *exec.Cmd) {
	t.Helper()
	dir := t.TempDir()
	w, err := OpenWriter("r", Options{Dir: dir, Size: 4 << 20, ReadLease: lease})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	churn(t, w, 500, 1)
	cmd, out := spawn(t, role, dir, "")
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "read\n" {
		t.Fatalf("child said %q", l)
	}
	return w, cmd
}

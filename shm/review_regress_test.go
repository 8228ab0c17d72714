package shm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/shmreg/shmreg/skiplist"
)

// extent is a byte range [off, end) with a description.
type extent struct {
	off, end uint64
	what     string
}

// blockOverlaps returns every pair of overlapping ranges among: the live
// structures (head node, every node linked at level 0 with its key, every
// value a node's word names, the current index table), the writer's free
// blocks, and its retired blocks. Live ranges are the minimum each
// structure occupies, so any overlap reported is real.
func blockOverlaps(w *Writer) []string {
	m := w.m
	var xs []extent
	l := &m.list
	xs = append(xs, extent{m.hdr.head, m.hdr.head + skiplist.NodeSize(skiplist.MaxHeight), "head"})
	for off, _ := l.Next(l.Head(), 0); off != 0; off, _ = l.Next(off, 0) {
		h, _ := l.Height(off)
		k, v, _ := l.Entry(off)
		xs = append(xs, extent{off, off + skiplist.NodeSize(h) + uint64(len(k)), fmt.Sprintf("node %q", k)})
		if v != 0 {
			vo, vl := skiplist.Unpair(v)
			if vl > 0 {
				xs = append(xs, extent{vo, vo + vl, fmt.Sprintf("value of %q", k)})
			}
		}
	}
	t, _ := m.currentTable()
	xs = append(xs, extent{t.off, t.off + indexHeaderSize + 8*uint64(len(t.slots)), "index"})
	for a := 0; a < 2; a++ {
		for c := 0; c < numClasses; c++ {
			for _, off := range w.rec.free[a][c] {
				xs = append(xs, extent{off, off + classSize(c), fmt.Sprintf("free[%d][%d]", a, classSize(c))})
			}
		}
	}
	for _, b := range w.rec.retired {
		xs = append(xs, extent{b.off, b.off + b.size, fmt.Sprintf("retired(%d)", b.size)})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].off < xs[j].off })
	var bad []string
	for i := range xs {
		for j := i + 1; j < len(xs) && xs[j].off < xs[i].end; j++ {
			// A node's value inside its own block is not an overlap.
			if xs[i].what == "node "+xs[j].what[len("value of "):] {
				continue
			}
			bad = append(bad, fmt.Sprintf("%s [%d,%d) overlaps %s [%d,%d)", xs[i].what, xs[i].off, xs[i].end, xs[j].what, xs[j].off, xs[j].end))
		}
	}
	return bad
}

// TestApartValueIsNeverTakenForInline: List.Inline decides that a value
// is inline from its offset alone (it starts right after the key). Once a
// free block of the other end serves a node (splitFrom), the rest of that
// block goes back as pieces that start right after the node; a value
// stored apart can get such a piece and then sits exactly where an inline
// value would. The next update or delete takes it for inline and retires
// node+value as one block, rounded up to a size class that reaches past
// the value into blocks still on the free lists (or live): two blocks of
// the pool then overlap, and two live entries end up sharing bytes.
func TestApartValueIsNeverTakenForInline(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 1 << 20, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	put := func(k string, v []byte) {
		t.Helper()
		if err := w.Put([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	// X: a key of 8 bytes whose node has height 1, so that its block
	// (32 + 8 = 40 bytes) is exactly one size class: the next block
	// starts where an inline value would.
	var x string
	for i := 0; ; i++ {
		x = fmt.Sprintf("xkey%04d", i)
		put(x, []byte("s"))
		if h, _ := w.m.list.Height(w.mustNode(t, x)); h == 1 {
			break
		}
		if _, err := w.Delete([]byte(x)); err != nil {
			t.Fatal(err)
		}
	}
	// Two blocks at the top end that will be free when the cursors meet:
	// 6144 bytes (class of 6000) and 5120 (class of 5000). Swapping a
	// value apart for another apart retires only the old value.
	put("big", bytes.Repeat([]byte("B"), 6000))
	put("mid", bytes.Repeat([]byte("M"), 5000))
	put("big", bytes.Repeat([]byte("b"), 70000))
	put("mid", bytes.Repeat([]byte("m"), 70000))
	// The cursors meet (as after filling the pool).
	w.m.hdr.alloc = w.m.hdr.valueAlloc
	// X's value goes apart: the value takes the 5120-byte free block, the
	// replacing node (40 bytes) is carved out of the 6144-byte block; the
	// rest of it goes back as pieces, the first (5120) right after the node.
	put(x, bytes.Repeat([]byte("1"), 5000))
	// Apart to apart: the new value takes that first piece, i.e. it starts
	// right after X's key.
	v2 := bytes.Repeat([]byte("2"), 5100)
	put(x, v2)
	node := w.mustNode(t, x)
	word, _ := w.m.list.ValueWord(node)
	inl, _ := w.m.list.Inline(node)
	t.Logf("X's node %d, value word offset %d, Inline reports %v", node, word&skiplist.MaxPairOffset, inl)
	if bad := blockOverlaps(w); len(bad) != 0 {
		t.Fatalf("overlap before the delete (setup problem): %q", bad)
	}
	// The delete retires node+value as a block of class(40+5100) = 6144,
	// reaching 984 bytes past the value block, over the pieces still free.
	if _, err := w.Delete([]byte(x)); err != nil {
		t.Fatal(err)
	}
	if bad := blockOverlaps(w); len(bad) != 0 {
		t.Errorf("after deleting %s: %d overlaps, e.g. %q", x, len(bad), bad[0])
	}
	// What it does to readers: an entry whose node block is that bogus
	// 6144-byte block (key 2000 + value 4000 inline), then one whose
	// 896-byte block is the piece it overlaps.
	kA := string(bytes.Repeat([]byte("A"), 2000))
	vA := bytes.Repeat([]byte("a"), 4000)
	put(kA, vA)
	put("kB", bytes.Repeat([]byte("z"), 780))
	r, err := Open("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Get([]byte(kA)); err != nil || !bytes.Equal(got, vA) {
		t.Errorf("a reader reads a corrupted value of the 2000-byte key: %v, %d bytes differ", err, differing(got, vA))
	}
	if rep, err := Fsck("r", opts); err != nil || len(rep.Problems) != 0 {
		t.Errorf("Fsck: %v %q", err, rep.Problems)
	}
}

func differing(a, b []byte) int {
	n := 0
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n + max(len(a), len(b)) - min(len(a), len(b))
}

func (w *Writer) mustNode(t *testing.T, key string) uint64 {
	t.Helper()
	n, _, err := w.m.lookup([]byte(key))
	if err != nil || n == 0 {
		t.Fatalf("lookup %q: %d %v", key, n, err)
	}
	return n
}

// reviewHugeMount mounts a hugetlbfs of its own for the test (mount options
// opt, e.g. "size=4M") over a system pool of at least 16 pages (set for the
// test and restored after it).
func reviewHugeMount(t *testing.T, opt string) string {
	t.Helper()
	hugetlbPool(t, 16) // sizes the pool; its own mount goes unused
	dir := t.TempDir()
	args := []string{"-t", "hugetlbfs"}
	if opt != "" {
		args = append(args, "-o", opt)
	}
	args = append(args, "none", dir)
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Skipf("cannot mount hugetlbfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func hugeFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.data"))
	return files
}

// TestHugeTLBRelativeDir: a relative HugeTLBDir (hugetlbfs_dir in the
// agent's config, --hugetlbfs-dir) is used as the symlink's target as
// given, so the link resolves relative to the region's directory, not to
// the writer's working directory: the writer works (it has the mapping),
// readers cannot open the region.
func TestHugeTLBRelativeDir(t *testing.T) {
	huge := reviewHugeMount(t, "size=8M")
	cwd := filepath.Dir(huge)
	t.Chdir(cwd)
	opts := Options{Dir: t.TempDir(), Size: 2 << 20, HugeTLBDir: filepath.Base(huge)}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if st := w.Stat(); st.HugeTLBFallback != "" {
		t.Fatalf("fell back: %s", st.HugeTLBFallback)
	}
	if err := w.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(opts.Resolve("r"))
	r, err := Open("r", Options{Dir: opts.Dir})
	if err != nil {
		t.Fatalf("a reader cannot open a region whose HugeTLBDir was relative (the link says %q): %v", link, err)
	}
	r.Close()
}

// TestHugeTLBNoLeakAfterKilledMove: a writer killed while it rebuilds
// a region that is a regular file into a hugetlbfs file (the move an
// OpenWriter with HugeTLBDir makes, or any rebuild of a region that fell
// back) leaves that file on hugetlbfs with only the temporary link naming
// it. finishReplace removes the link; adoptHugeTLB, which removes
// leftovers, returns at once because the region's path is not a link. The
// leftover holds its huge pages; with a pool that the leftover makes too
// short the region stays on a regular file, and every later writer does
// the same: the pages never come back.
func TestHugeTLBNoLeakAfterKilledMove(t *testing.T) {
	huge := reviewHugeMount(t, "size=4M") // a pool of two 2 MiB pages
	opts := Options{Dir: t.TempDir(), Size: 4 << 20}
	w, err := OpenWriter("r", opts) // a regular file (no HugeTLBDir yet)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	// What a writer killed in compact, after createMapping and before
	// replace, leaves behind.
	nm, err := createHugeTLBMapping(w.path, huge, 4<<20, 0o644, minIndexCap)
	if err != nil {
		t.Fatal(err)
	}
	_ = nm.unmap()
	w.Close()
	hopts := opts
	hopts.HugeTLBDir = huge
	for i := 0; i < 3; i++ {
		w, err := OpenWriter("r", hopts)
		if err != nil {
			t.Fatal(err)
		}
		st := w.Stat()
		w.Close()
		t.Logf("writer %d: rebuilds so far %d, fallback %q", i, st.Compactions, st.HugeTLBFallback)
	}
	// What may stay is the file the region's path now links to (the
	// writers moved it there once the leftover was gone), nothing else.
	live, _ := filepath.EvalSymlinks(opts.Resolve("r"))
	for _, f := range hugeFiles(t, huge) {
		if f != live {
			t.Fatalf("after three writers, hugetlbfs still holds %s, which no region uses (the region is at %s)", f, live)
		}
	}
}

// TestOpenDuringHugeTLBRebuild: a rebuild on hugetlbfs renames a new
// link over the path and then removes the old file the old link named. A
// reader whose open resolved the old link just before the rename and
// reaches the old file just after its removal got ENOENT: Open failed with
// "incomplete region" (with regular files the rename is atomic and an open
// always finds one of the two files). The old file now stays a read lease.
func TestOpenDuringHugeTLBRebuild(t *testing.T) {
	opensDuringRebuilds(t, reviewHugeMount(t, "size=16M"))
}

// TestOpenDuringPlainRebuild is the same with regular files, where the
// rename is atomic.
func TestOpenDuringPlainRebuild(t *testing.T) {
	opensDuringRebuilds(t, "")
}

// opensDuringRebuilds opens and closes Readers for a second while the
// writer rebuilds the region over and over; every open must succeed.
func opensDuringRebuilds(t *testing.T, huge string) {
	opts := Options{Dir: t.TempDir(), Size: 2 << 20, HugeTLBDir: huge}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if err := w.Compact(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	ropts := Options{Dir: opts.Dir, ReadLease: 5 * time.Millisecond} // Close keeps the control file open a lease long
	deadline := time.Now().Add(time.Second)
	opens, fails := 0, 0
	var first error
	for time.Now().Before(deadline) {
		r, err := Open("r", ropts)
		opens++
		if err != nil {
			fails++
			if first == nil {
				first = err
			}
			continue
		}
		r.Close()
	}
	close(stop)
	rebuilds := <-done
	t.Logf("%d opens, %d rebuilds", opens, rebuilds)
	if fails > 0 {
		t.Fatalf("%d of %d opens failed during rebuilds, first: %v", fails, opens, first)
	}
}

// TestRandomChurnNoOverlap: random puts and deletes on a small region
// (so that the cursors meet and free blocks are split across the ends),
// checking after every commit that no free or retired block overlaps
// another or a live structure, and that every key reads back.
func TestRandomChurnNoOverlap(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 512 << 10, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string][]byte{}
	sizes := []int{0, 1, 7, 60, 300, 1500, 4096, 4097, 5000, 6000, 9000, 20000}
	for op := 0; op < 4000; op++ {
		k := fmt.Sprintf("k%0*d", 1+rng.IntN(12), rng.IntN(300))
		if rng.IntN(4) == 0 {
			if _, err := w.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		} else {
			v := bytes.Repeat([]byte{byte(op)}, sizes[rng.IntN(len(sizes))])
			if err := w.Put([]byte(k), v); err != nil {
				t.Fatal(err)
			}
			model[k] = v
		}
		if bad := blockOverlaps(w); len(bad) != 0 {
			t.Fatalf("op %d (compactions %d): %d overlaps, e.g. %q", op, w.Stat().Compactions, len(bad), bad[0])
		}
		if op%500 == 0 {
			for mk, mv := range model {
				_, word, err := w.m.lookup([]byte(mk))
				if err != nil || word == 0 {
					t.Fatalf("op %d: %s missing", op, mk)
				}
				got, _ := w.m.list.Bytes(word)
				if !bytes.Equal(got, mv) {
					t.Fatalf("op %d: %s holds %d bytes differing", op, mk, differing(got, mv))
				}
			}
		}
	}
	t.Logf("%+v", w.Stat().Compactions)
}

// TestLastNodeBeforeFullIsNotTakenForInline: the same misreading
// without any split. A put of a new key stores its value apart first (top
// cursor down), then allocates its node (bottom cursor up). When the node
// is the last block that fits and ends exactly where its own value begins
// (cursors met exactly), the value word names the node's inline offset.
// Deleting the key retires node+value as one block of class(40+5100) =
// 6144 bytes, 984 bytes past the value's 5120-byte block, over the value
// of the key stored before it; reusing the block overwrites that value.
func TestLastNodeBeforeFullIsNotTakenForInline(t *testing.T) {
	for try := 0; try < 20; try++ {
		if lastNodeBeforeFull(t) {
			return
		}
	}
	t.Skip("never drew a node of height 1")
}

func lastNodeBeforeFull(t *testing.T) bool {
	opts := Options{Dir: t.TempDir(), Size: 1 << 20, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	put := func(k string, v []byte) {
		t.Helper()
		if err := w.Put([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	vY := bytes.Repeat([]byte("y"), 9000)
	put("yyyyyyyy", vY) // the value stored just above X's
	// The bottom cursor where X's node (40 bytes at height 1, on a line
	// boundary + 24 at most: no padding) will end exactly at X's value:
	// what a pool filled by earlier entries leaves.
	vx := bytes.Repeat([]byte("x"), 5100) // class 5120
	top := w.m.hdr.valueAlloc - 5120
	w.m.hdr.alloc = top - 40
	if w.m.hdr.alloc%64 > 24 {
		t.Fatalf("setup: alloc %d", w.m.hdr.alloc)
	}
	put("xxxxxxxx", vx)
	if st := w.Stat(); st.Compactions != 0 {
		return false // X's node drew a taller tower and did not fit
	}
	node := w.mustNode(t, "xxxxxxxx")
	word, _ := w.m.list.ValueWord(node)
	inl, _ := w.m.list.Inline(node)
	t.Logf("X: node %d, its value (apart, %d bytes) at %d; Inline says %v", node, len(vx), word&skiplist.MaxPairOffset, inl)
	if _, err := w.Delete([]byte("xxxxxxxx")); err != nil {
		t.Fatal(err)
	}
	if bad := blockOverlaps(w); len(bad) != 0 {
		t.Errorf("after the delete: %q", bad)
	}
	// Reuse: an inline entry of class 6144 (key 2000 + value 4000) takes
	// the retired block once nothing holds it (the cursors have met, so the
	// allocation reclaims at once).
	put(string(bytes.Repeat([]byte("A"), 2000)), bytes.Repeat([]byte("a"), 4000))
	r, err := Open("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Get([]byte("yyyyyyyy")); err != nil || !bytes.Equal(got, vY) {
		t.Errorf("Y's value, never written since its put, now reads %d bytes differently (%v)", differing(got, vY), err)
	}
	if rep, err := Fsck("r", opts); err != nil || len(rep.Problems) != 0 {
		t.Logf("Fsck: %v %q", err, rep.Problems)
	}
	return true
}

package shm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shmreg/shmreg/skiplist"
)

// placement reports where the writer keeps key's value: inside its node
// (version 2) or apart at the top of the pool.
func placement(t *testing.T, w *Writer, key string) (inline bool, node uint64) {
	t.Helper()
	node, word, err := w.m.lookup([]byte(key))
	if err != nil || node == 0 || word == 0 {
		t.Fatalf("lookup %q: node %d word %x err %v", key, node, word, err)
	}
	inline, err = w.m.list.Inline(node)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := w.m.list.Height(node)
	k, _, _ := w.m.list.Entry(node)
	if at := word&skiplist.MaxPairOffset == skiplist.InlineOffset(node, h, uint64(len(k))); inline && !at {
		t.Fatalf("%q: the node says its value is inline, but its word points elsewhere", key)
	}
	return inline, node
}

func fsckClean(t *testing.T, name string, opts Options) {
	t.Helper()
	rep, err := Fsck(name, opts)
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("Fsck: %v %q", err, rep.Problems)
	}
}

// TestValuesLiveBesideTheirNodes checks version 2's placement through every
// kind of change: a small value sits in its node's block, a large one apart;
// an update that keeps a large value apart swaps the value word and keeps
// the node, any other update puts a new node in the old one's place.
func TestValuesLiveBesideTheirNodes(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 4 << 20}
	w, r := openPair(t, opts)
	small := func(s string) []byte { return []byte("small " + s) }
	large := func(s string) []byte { return bytes.Repeat([]byte(s), inlineMax/len(s)+1) }
	steps := []struct {
		name       string
		value      []byte
		wantInline bool
		sameNode   bool
	}{
		{"insert small", small("1"), true, false},
		{"small to small", small("2"), true, false},
		{"small to empty", []byte{}, true, false},
		{"empty to large", large("L1"), false, false},
		{"large to large", large("L2"), false, true},
		{"large to small", small("3"), true, false},
		{"exactly inlineMax", bytes.Repeat([]byte("x"), inlineMax), true, false},
		{"one past inlineMax", bytes.Repeat([]byte("y"), inlineMax+1), false, false},
	}
	var prevNode uint64
	for i, st := range steps {
		if err := w.Put([]byte("k"), st.value); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		inline, node := placement(t, w, "k")
		if inline != st.wantInline {
			t.Errorf("%s: inline = %v, want %v", st.name, inline, st.wantInline)
		}
		if i > 0 && (node == prevNode) != st.sameNode {
			t.Errorf("%s: node %d after %d: same node = %v, want %v", st.name, node, prevNode, node == prevNode, st.sameNode)
		}
		prevNode = node
		got, err := r.Get([]byte("k"))
		if err != nil || !bytes.Equal(got, st.value) {
			t.Fatalf("%s: reader got %d bytes (%v), want %d", st.name, len(got), err, len(st.value))
		}
		var scanned int
		if err := r.Scan(nil, func(k, v []byte) bool {
			scanned++
			if !bytes.Equal(v, st.value) {
				t.Errorf("%s: scan saw a value of %d bytes, want %d", st.name, len(v), len(st.value))
			}
			return true
		}); err != nil || scanned != 1 {
			t.Fatalf("%s: scan saw %d entries (%v), want 1 (a replaced node linked twice?)", st.name, scanned, err)
		}
		fsckClean(t, "r", opts)
	}
	if ok, err := w.Delete([]byte("k")); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if st := w.Stat(); st.LiveBytes != 0 || st.Entries != 0 {
		t.Fatalf("after the delete: %d live bytes, %d entries", st.LiveBytes, st.Entries)
	}
	fsckClean(t, "r", opts)
}

// TestInlineModel runs random puts (of values on both sides of inlineMax),
// overwrites and deletes against a map, with a reader checking every key
// after every commit and Fsck checking the region; the retired blocks of
// replaced nodes must be reused, or the region would be rebuilt.
func TestInlineModel(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 8 << 20, ReadLease: time.Hour}
	w, r := openPair(t, opts)
	rng := rand.New(rand.NewPCG(18, 2))
	model := map[string][]byte{}
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("key/%d/%s", i, bytes.Repeat([]byte("k"), rng.IntN(40)))
	}
	for round := 0; round < 60; round++ {
		var b Batch
		for op := 0; op < 50; op++ {
			k := keys[rng.IntN(len(keys))]
			if rng.IntN(5) == 0 {
				b.Delete([]byte(k))
				delete(model, k)
				continue
			}
			n := rng.IntN(300)
			if rng.IntN(10) == 0 {
				n = inlineMax - 2 + rng.IntN(5)
			}
			v := bytes.Repeat([]byte{byte(round), byte(op)}, n/2+1)[:n]
			b.Put([]byte(k), v)
			model[k] = v
		}
		if err := w.Commit(&b); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			got, err := r.Get([]byte(k))
			want, ok := model[k]
			if ok != (err == nil) || !bytes.Equal(got, want) {
				t.Fatalf("round %d, %q: got %d bytes (%v), want %d (present %v)", round, k, len(got), err, len(want), ok)
			}
			if ok {
				if inline, _ := placement(t, w, k); inline != (len(want) <= inlineMax) {
					t.Fatalf("round %d, %q: %d-byte value inline = %v", round, k, len(want), inline)
				}
			}
		}
		n := 0
		if err := r.Scan(nil, func(k, v []byte) bool {
			n++
			if !bytes.Equal(model[string(k)], v) {
				t.Fatalf("round %d: scan %q: %d bytes, want %d", round, k, len(v), len(model[string(k)]))
			}
			return true
		}); err != nil || n != len(model) {
			t.Fatalf("round %d: scan saw %d entries (%v), model has %d", round, n, err, len(model))
		}
		if round%10 == 9 {
			fsckClean(t, "r", opts)
		}
	}
	if st := w.Stat(); st.Compactions != 0 {
		t.Fatalf("the region was rebuilt %d times: replaced nodes' blocks were not reused (%+v)", st.Compactions, st)
	}
}

// TestVersion1RegionIsConverted: a region laid out by a version-1 writer
// (every value apart from its node) is read as it is, and the next writer
// rebuilds it as version 2 into a new file, which readers move to.
func TestVersion1RegionIsConverted(t *testing.T) {
	dir := t.TempDir()
	v1 := Options{Dir: dir, Size: 1 << 20, inlineMax: -1}
	w, err := OpenWriter("r", v1)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := 0; i < 500; i++ {
		k, v := fmt.Sprintf("svc/s/%03d", i), bytes.Repeat([]byte{byte(i)}, i%100)
		want[k] = v
		if err := w.Put([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	if inline, _ := placement(t, w, "svc/s/007"); inline {
		t.Fatal("the version-1 stand-in placed a value inline")
	}
	w.m.hdr.version = 1
	w.Close()

	opts := Options{Dir: dir}
	r, err := Open("r", opts)
	if err != nil {
		t.Fatalf("a version-1 region must stay readable: %v", err)
	}
	defer r.Close()
	if st, _ := r.Stat(); st.LayoutVersion != 1 {
		t.Fatalf("layout version %d before conversion", st.LayoutVersion)
	}
	check := func(when string) {
		for k, v := range want {
			got, err := r.Get([]byte(k))
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("%s: %q: %v", when, k, err)
			}
		}
	}
	check("version 1")
	fsckClean(t, "r", opts)

	w, err = OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	st := w.Stat()
	if st.LayoutVersion != LayoutVersion || st.Compactions != 1 {
		t.Fatalf("after the version-2 writer opened it: version %d, %d rebuilds", st.LayoutVersion, st.Compactions)
	}
	if inline, _ := placement(t, w, "svc/s/007"); !inline {
		t.Fatal("the converted region keeps small values apart")
	}
	check("converted")
	if st, _ := r.Stat(); st.LayoutVersion != LayoutVersion {
		t.Fatalf("the reader stayed on the version-%d file", st.LayoutVersion)
	}
	fsckClean(t, "r", opts)
}

// TestInlineBlockSize pins the arithmetic docs/LAYOUT.md gives for a
// version-2 node block.
func TestInlineBlockSize(t *testing.T) {
	for _, c := range []struct {
		h         int
		k, v      uint64
		wantOff   uint64
		wantBlock uint64
		wantApart uint64
	}{
		{1, 1, 0, 32 + 8, 32 + 8, 33},
		{1, 8, 5, 32 + 8, 32 + 8 + 5, 40},
		{2, 9, 100, 40 + 16, 40 + 16 + 100, 49},
	} {
		if got := skiplist.InlineOffset(0, c.h, c.k); got != c.wantOff {
			t.Errorf("InlineOffset(h=%d, k=%d) = %d, want %d", c.h, c.k, got, c.wantOff)
		}
		if got := skiplist.BlockSize(c.h, c.k, c.v, true); got != c.wantBlock {
			t.Errorf("BlockSize(h=%d, k=%d, v=%d, inline) = %d, want %d", c.h, c.k, c.v, got, c.wantBlock)
		}
		if got := skiplist.BlockSize(c.h, c.k, c.v, false); got != c.wantApart {
			t.Errorf("BlockSize(h=%d, k=%d, apart) = %d, want %d", c.h, c.k, got, c.wantApart)
		}
	}
}

// TestOverwriteNeverGoesBackAcrossPaths: a reader that sees a key's new
// value through the list (Scan) must not see its old value through the
// index (Get) afterwards, nor the other way round. An overwrite that
// replaces a node switches the old node's value word to the new bytes
// first, so both paths change at one store.
func TestOverwriteNeverGoesBackAcrossPaths(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 16 << 20}
	w, r := openPair(t, opts)
	const keys = 16
	key := func(i int) []byte { return []byte(fmt.Sprintf("k/%02d", i)) }
	val := func(n uint64) []byte { return []byte(fmt.Sprintf("%012d", n)) }
	for i := 0; i < keys; i++ {
		if err := w.Put(key(i), val(0)); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		var n uint64
		for {
			select {
			case <-stop:
				werr <- nil
				return
			default:
			}
			n++
			if err := w.Put(key(int(n%keys)), val(n)); err != nil {
				werr <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(time.Second)
	rounds := 0
	for time.Now().Before(deadline) {
		rounds++
		seen := map[string]string{}
		if err := r.Scan([]byte("k/"), func(k, v []byte) bool {
			seen[string(k)] = string(v)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		for k, scanned := range seen {
			got, err := r.Get([]byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) < scanned {
				close(stop)
				<-werr
				t.Fatalf("round %d: %s: Scan saw %s, then Get saw the older %s", rounds, k, scanned, got)
			}
		}
	}
	close(stop)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds", rounds)
}

// TestReplaceSwitchesBothPathsAtOnce stops an overwrite between the list
// taking the new node and the index taking it (the widest gap a writer
// descheduled there leaves) and reads the key both ways: both must give
// the new value already.
func TestReplaceSwitchesBothPathsAtOnce(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 4 << 20}
	w, r := openPair(t, opts)
	for i := 0; i < 100; i++ {
		if err := w.Put([]byte(fmt.Sprintf("k/%03d", i)), []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	checked := 0
	testHookReplaced = func(key []byte) {
		checked++
		got, err := r.Get(key)
		if err != nil || string(got) != "new" {
			t.Errorf("mid-overwrite: Get(%s) = %q, %v; want the new value", key, got, err)
		}
		r.Scan(key, func(k, v []byte) bool {
			if string(v) != "new" {
				t.Errorf("mid-overwrite: Scan(%s) saw %q; want the new value", k, v)
			}
			return false
		})
	}
	defer func() { testHookReplaced = nil }()
	for i := 0; i < 100; i++ {
		if err := w.Put([]byte(fmt.Sprintf("k/%03d", i)), []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	if checked != 100 {
		t.Fatalf("the hook ran %d times, want 100 (every overwrite replaces its node)", checked)
	}
}

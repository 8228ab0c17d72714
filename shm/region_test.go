package shm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// testOptions puts regions in a per-test directory, small enough that tests
// exercise growth.
func testOptions(t testing.TB) Options {
	return Options{Dir: t.TempDir(), Size: 128 << 10}
}

func openPair(t testing.TB, opts Options) (*Writer, *Reader) {
	t.Helper()
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r, err := Open("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return w, r
}

func TestPutGetDeleteScan(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	if _, err := r.Get([]byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get on empty region: %v", err)
	}
	for _, kv := range [][2]string{{"svc/b/1", "one"}, {"svc/a/1", "x"}, {"cfg/z", ""}, {"svc/a/2", "two"}} {
		if err := w.Put([]byte(kv[0]), []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Put([]byte("svc/a/1"), []byte("updated")); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get([]byte("svc/a/1"))
	if err != nil || string(got) != "updated" {
		t.Fatalf("Get after update = %q, %v", got, err)
	}
	got, err = r.Get([]byte("cfg/z"))
	if err != nil || len(got) != 0 {
		t.Fatalf("Get of empty value = %q, %v", got, err)
	}
	if ok, err := w.Delete([]byte("svc/b/1")); !ok || err != nil {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if ok, _ := w.Delete([]byte("svc/b/1")); ok {
		t.Fatal("second Delete reported the key present")
	}
	if _, err := r.Get([]byte("svc/b/1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
	var keys []string
	if err := r.Scan([]byte("svc/"), func(k, v []byte) bool { keys = append(keys, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"svc/a/1=updated", "svc/a/2=two"}; !slices.Equal(keys, want) {
		t.Fatalf("Scan = %q, want %q", keys, want)
	}
	if r.Len() != 3 {
		t.Fatalf("Len = %d, want 3", r.Len())
	}
	err = r.View([]byte("svc/a/2"), func(v []byte) error {
		if string(v) != "two" {
			return fmt.Errorf("View saw %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Fsck("r", Options{Dir: filepath.Dir(w.Path())}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("Fsck: %v %q", err, rep.Problems)
	}
}

func TestLimits(t *testing.T) {
	w, _ := openPair(t, testOptions(t))
	if err := w.Put(nil, []byte("v")); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("empty key: %v", err)
	}
	if err := w.Put(bytes.Repeat([]byte("k"), MaxKeyLen+1), nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("long key: %v", err)
	}
	var b Batch
	b.Put([]byte("ok"), []byte("1"))
	b.Put(nil, []byte("bad"))
	if err := w.Commit(&b); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("batch with a bad key: %v", err)
	}
	if st := w.Stat(); st.Entries != 0 {
		t.Fatalf("a rejected batch wrote %d entries", st.Entries)
	}
}

// TestModel applies random batches through the writer and checks every
// answer of a reader against a plain Go map, with the region starting small
// enough to grow several times.
func TestModel(t *testing.T) {
	opts := testOptions(t)
	w, r := openPair(t, opts)
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(7, 8))
	for round := 0; round < 300; round++ {
		var b Batch
		for i := 0; i < 1+rng.IntN(40); i++ {
			k := fmt.Sprintf("svc/s%02d/i%05d", rng.IntN(30), rng.IntN(400))
			if rng.IntN(4) == 0 {
				b.Delete([]byte(k))
				delete(model, k)
				continue
			}
			v := strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(300))
			b.Put([]byte(k), []byte(v))
			model[k] = v
		}
		if err := w.Commit(&b); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			k := fmt.Sprintf("svc/s%02d/i%05d", rng.IntN(30), rng.IntN(400))
			got, err := r.Get([]byte(k))
			want, ok := model[k]
			if ok != (err == nil) || string(got) != want {
				t.Fatalf("round %d: Get %q = %q, %v; want %q, %v", round, k, got, err, want, ok)
			}
		}
	}
	var want, got []string
	for k, v := range model {
		want = append(want, k+"="+v)
	}
	sort.Strings(want)
	if err := r.Scan(nil, func(k, v []byte) bool { got = append(got, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("full scan: %d entries, want %d", len(got), len(want))
	}
	st := w.Stat()
	if st.Compactions == 0 {
		t.Fatalf("a 128 KiB region took %d bytes of writes without growing: %+v", st.LiveBytes+st.GarbageBytes, st)
	}
	if r.Len() != len(model) {
		t.Fatalf("Len = %d, want %d", r.Len(), len(model))
	}
	rep, err := Fsck("r", opts)
	if err != nil || len(rep.Problems) != 0 || rep.Entries != len(model) {
		t.Fatalf("Fsck: %v, %d entries, problems %q", err, rep.Entries, rep.Problems)
	}
}

func TestOpenErrors(t *testing.T) {
	opts := testOptions(t)
	if _, err := Open("missing", opts); !errors.Is(err, ErrNoRegion) {
		t.Fatalf("Open of a missing region: %v", err)
	}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWriter("r", opts); !errors.Is(err, ErrWriterBusy) {
		t.Fatalf("second writer: %v", err)
	}
	w.Close()
	path := opts.Resolve("r")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func([]byte) []byte
		want error
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrBadMagic},
		{"future version", func(b []byte) []byte { b[8] = LayoutVersion + 1; return b }, ErrLayoutVersion},
		{"version 0", func(b []byte) []byte { b[8] = 0; return b }, ErrLayoutVersion},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, ErrTruncated},
		{"tiny", func(b []byte) []byte { return b[:100] }, ErrTruncated},
		{"head out of bounds", func(b []byte) []byte { b[48+5] = 0x7f; return b }, ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, c.edit(slices.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Open("r", opts); !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
			if _, err := OpenWriter("r", opts); !errors.Is(err, c.want) {
				t.Fatalf("OpenWriter: %v, want %v", err, c.want)
			}
		})
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores file modes; test with a directory we cannot enter instead.
		opts := Options{Dir: "/proc/1/root/nonexistent-shmreg"}
		if _, err := OpenWriter("r", opts); err == nil {
			t.Fatal("OpenWriter in an unusable directory succeeded")
		}
		return
	}
	opts := testOptions(t)
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	os.Chmod(opts.Resolve("r"), 0)
	if _, err := Open("r", opts); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Open of an unreadable region: %v", err)
	}
}

func TestReaderFollowsCompaction(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	for i := 0; i < 100; i++ {
		if err := w.Put([]byte(fmt.Sprintf("k%03d", i)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	before := r.cur.Load()
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("after"), []byte("yes")); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get([]byte("after"))
	if err != nil || string(got) != "yes" {
		t.Fatalf("Get after compaction = %q, %v", got, err)
	}
	if r.cur.Load() == before {
		t.Fatal("reader did not move to the compacted file")
	}
	for i := 0; i < 100; i++ {
		got, err := r.Get([]byte(fmt.Sprintf("k%03d", i)))
		if err != nil || string(got) != fmt.Sprint(i) {
			t.Fatalf("k%03d = %q, %v", i, got, err)
		}
	}
}

func TestPlaceSurvivesCompaction(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	var b Batch
	b.Put([]byte("a"), []byte("1"))
	b.SetPlace("center-A", 42)
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	if c, rev := r.Place(); c != "center-A" || rev != 42 {
		t.Fatalf("Place = %q, %d", c, rev)
	}
}

// TestHashVectors checks Hash against vectors computed independently from
// the definition in docs/LAYOUT.md (examples/c/testdata/hash_vectors.txt,
// made by a separate script): the hash is part of the layout.
func TestHashVectors(t *testing.T) {
	data, err := os.ReadFile("../examples/c/testdata/hash_vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		hexHash, key, _ := strings.Cut(line, "\t")
		var want uint64
		if _, err := fmt.Sscanf(hexHash, "%x", &want); err != nil {
			t.Fatalf("bad vector line %q", line)
		}
		if got := Hash([]byte(key)); got != want {
			t.Errorf("Hash(%q) = %016x, want %016x", key, got, want)
		}
		n++
	}
	if n < 5 {
		t.Fatalf("only %d vectors", n)
	}
	seen := map[uint64]bool{}
	for i := 0; i < 100000; i++ {
		h := Hash([]byte(fmt.Sprintf("svc/service-%04d/instance-%06d", i%1000, i)))
		if seen[h] {
			t.Fatalf("collision at %d", i)
		}
		seen[h] = true
	}
}

// TestReplaceFinishedByNextWriter: a writer killed after renaming a rebuilt
// file over the path but before marking the old file superseded would leave
// readers on the old file for good. The next writer finds the old file by
// its second name and marks it, and the reader moves to the new file.
func TestReplaceFinishedByNextWriter(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 1 << 20}
	w, r := openPair(t, opts)
	if err := w.Put([]byte("before"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get([]byte("before")); err != nil {
		t.Fatal(err)
	}
	// The first two steps of replace, then the writer dies.
	nm, err := createMapping(w.path, opts.Size, 0o644, minIndexCap)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Link(w.path, supersedingPath(w.path)); err != nil {
		t.Fatal(err)
	}
	if err := nm.publish(w.path); err != nil {
		t.Fatal(err)
	}
	nm.unmap()
	w.Close()

	w2, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := os.Stat(supersedingPath(w.path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old file's second name is still there: %v", err)
	}
	if err := w2.Put([]byte("after"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Get([]byte("after")); err != nil || string(v) != "2" {
		t.Fatalf("the reader did not move to the new file: %q %v", v, err)
	}
	if st, _ := r.Stat(); st.SupersededMapped != 1 {
		t.Fatalf("reader maps %d superseded files, want 1", st.SupersededMapped)
	}
}

// TestReplaceKilledBeforeRename: killed after giving the old file its
// second name but before the rename, nothing was replaced: the next writer
// drops the second name, leaves the region as it is, and removes the
// half-built file.
func TestReplaceKilledBeforeRename(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Size: 1 << 20}
	w, r := openPair(t, opts)
	if err := w.Put([]byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	nm, err := createMapping(w.path, opts.Size, 0o644, minIndexCap)
	if err != nil {
		t.Fatal(err)
	}
	tmp := nm.path
	nm.unmap()
	if err := os.Link(w.path, supersedingPath(w.path)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w2, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	for _, p := range []string{supersedingPath(w.path), tmp} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still there: %v", p, err)
		}
	}
	if err := w2.Put([]byte("k2"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	st, err := r.Stat()
	if err != nil || st.Superseded || st.SupersededMapped != 0 || st.Entries != 2 {
		t.Fatalf("the region was replaced though nothing was rebuilt: %+v %v", st, err)
	}
}

// TestOpenIncompleteRegion: a region missing one of its two files is
// reported as such, naming the missing file, and is still ErrNoRegion.
func TestOpenIncompleteRegion(t *testing.T) {
	for _, control := range []bool{true, false} {
		opts := testOptions(t)
		w, err := OpenWriter("r", opts)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		path := opts.Resolve("r")
		missing := path
		if control {
			missing = path + ".ctl"
		}
		if err := os.Remove(missing); err != nil {
			t.Fatal(err)
		}
		_, err = Open("r", opts)
		var ie *IncompleteError
		if !errors.As(err, &ie) || ie.Missing != missing || ie.Control != control || !errors.Is(err, ErrNoRegion) {
			t.Errorf("Open with %s removed: %v", missing, err)
		}
	}
}

// TestHashMatchesDefinition checks Hash, whose tail is read with one
// shifted load, against the definition in docs/LAYOUT.md written out byte by
// byte, at every length up to 40 and every tail length.
func TestHashMatchesDefinition(t *testing.T) {
	def := func(key []byte) uint64 {
		const k1, k2, k3, k4 = 0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
		h := uint64(k1) ^ uint64(len(key))*k2
		for len(key) > 0 {
			var c uint64
			for i := 0; i < 8 && i < len(key); i++ {
				c |= uint64(key[i]) << (8 * i)
			}
			h = (h ^ c) * k2
			h ^= h >> 29
			key = key[min(8, len(key)):]
		}
		h ^= h >> 33
		h *= k3
		h ^= h >> 33
		h *= k4
		h ^= h >> 33
		return h
	}
	buf := make([]byte, 48)
	for i := range buf {
		buf[i] = byte(0xA5 ^ i*37)
	}
	for n := 0; n <= 40; n++ {
		for off := 0; off < 8; off++ {
			k := buf[off : off+n]
			if got, want := Hash(k), def(k); got != want {
				t.Fatalf("Hash of %d bytes at offset %d = %016x, want %016x", n, off, got, want)
			}
		}
	}
}

package shm

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// FuzzRegionFile mutates a valid region file and opens and reads it. Any
// outcome but a panic, a crash or a hang is acceptable: a damaged region must
// produce errors, never take the reader down.
func FuzzRegionFile(f *testing.F) {
	dir := f.TempDir()
	opts := Options{Dir: dir, Size: 32 << 10}
	w, err := OpenWriter("r", opts)
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 60; i++ {
		if err := w.Put([]byte(fmt.Sprintf("svc/s/%02d", i)), []byte(fmt.Sprintf("v%d", i))); err != nil {
			f.Fatal(err)
		}
	}
	w.Delete([]byte("svc/s/07"))
	w.Close()
	path := opts.Resolve("r")
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	// Seeds that damage the structures a reader follows first.
	for _, off := range []int{48, 64, 80, 128, 4096, 4096 + 24, 4096 + 160} {
		bad := append([]byte(nil), good...)
		bad[off+1] ^= 0x5a
		f.Add(bad)
	}
	f.Add(good[:headerSize])
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open("r", opts)
		if err != nil {
			return
		}
		defer r.Close()
		for _, k := range []string{"svc/s/00", "svc/s/07", "svc/s/59", "missing"} {
			if _, err := r.Get([]byte(k)); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get(%q) returned an unexpected error kind: %v", k, err)
			}
		}
		n := 0
		_ = r.Scan(nil, func(k, v []byte) bool { n++; return n < 10000 })
		_ = r.Snapshot(func(s *Snapshot) error { fsck(s.m); return nil })
	})
}

// TestReadAllocations: a hit allocates only Get's copy; View allocates nothing.
func TestReadAllocations(t *testing.T) {
	w, r := openPair(t, testOptions(t))
	key := []byte("svc/a/1")
	if err := w.Put(key, make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { r.Get(key) }); n != 1 {
		t.Fatalf("Get allocates %v times per call, want 1 (the copy)", n)
	}
	total := 0
	fn := func(v []byte) error { total += len(v); return nil }
	if n := testing.AllocsPerRun(1000, func() { r.View(key, fn) }); n != 0 {
		t.Fatalf("View allocates %v times per call, want 0", n)
	}
	if total == 0 {
		t.Fatal("View never called fn")
	}
}

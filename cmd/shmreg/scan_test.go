package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shmreg/shmreg/shm"
)

// chunkRegion is a region holding keys around the prefix "a/" (keys that
// sort just inside and just outside it) and one value larger than the
// small byte limits below, with a reader on it.
func chunkRegion(t *testing.T) (*shm.Writer, *shm.Reader) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "region")
	w, err := shm.OpenWriter(path, shm.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	var b shm.Batch
	for _, k := range []string{"a", "a.", "a0", "b/1", "a/", "a/1", "a/1\x00", "a/1\xff", "a/10", "a/2", "a/3", "a/4", "a/5", "a/6"} {
		b.Put([]byte(k), []byte("v"+k))
	}
	b.Put([]byte("a/big"), bytes.Repeat([]byte{'B'}, 100))
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	r, err := shm.Open(path, shm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return w, r
}

// TestScanChunks: whatever the limits, the chunks put together are exactly
// what one Scan of the prefix returns, and each chunk keeps to the limits
// (a chunk of one entry may exceed the byte limit).
func TestScanChunks(t *testing.T) {
	_, r := chunkRegion(t)
	for _, prefix := range []string{"a/", "a/1", "", "zzz"} {
		var want []entry
		if err := r.Scan([]byte(prefix), func(k, v []byte) bool {
			want = append(want, entry{bytes.Clone(k), bytes.Clone(v)})
			return true
		}); err != nil {
			t.Fatal(err)
		}
		for _, limit := range []chunkLimit{{1, 1 << 20}, {3, 1 << 20}, {100, 10}, {100, 20}, {4, 50}, listChunk()} {
			var got []entry
			chunks := 0
			err := scanChunks(r, []byte(prefix), limit, func(chunk []entry) error {
				chunks++
				if chunks > len(want) {
					return errors.New("more chunks than entries: the scan does not move on")
				}
				size := 0
				for _, e := range chunk {
					size += len(e.key) + len(e.value)
				}
				if len(chunk) == 0 || len(chunk) > limit.entries || len(chunk) > 1 && size > limit.bytes {
					t.Errorf("prefix %q, limit %+v: a chunk of %d entries, %d bytes", prefix, limit, len(chunk), size)
				}
				got = append(got, chunk...)
				return nil
			})
			if err != nil {
				t.Fatalf("prefix %q, limit %+v: %v", prefix, limit, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("prefix %q, limit %+v: got %q\nwant %q", prefix, limit, got, want)
			}
			if len(want) == 0 && chunks != 0 {
				t.Errorf("prefix %q: %d chunks of nothing", prefix, chunks)
			}
		}
	}
}

// TestScanChunksAcrossCommits: commits between chunks are seen or not as
// with one Scan: keys come in order, none twice; a key added after the last
// one emitted, or changed there, is seen with its new value; one added
// before it is not; a deleted one is not emitted after its deletion.
func TestScanChunksAcrossCommits(t *testing.T) {
	w, r := chunkRegion(t)
	var got []string
	err := scanChunks(r, []byte("a/"), chunkLimit{entries: 2, bytes: 1 << 20}, func(chunk []entry) error {
		for _, e := range chunk {
			got = append(got, string(e.key)+"="+string(e.value))
		}
		if len(got) == 2 { // emitted a/, a/1
			var b shm.Batch
			b.Put([]byte("a/0"), []byte("behind"))
			b.Put([]byte("a/1\x00"), []byte("changed"))
			b.Put([]byte("a/25"), []byte("ahead"))
			b.Delete([]byte("a/3"))
			if err := w.Commit(&b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/=va/", "a/1=va/1", "a/1\x00=changed", "a/10=va/10", "a/1\xff=va/1\xff", "a/2=va/2", "a/25=ahead",
		"a/4=va/4", "a/5=va/5", "a/6=va/6", "a/big=" + strings.Repeat("B", 100)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestScanChunksStopsAtEmitError: emit's error ends the scan and is
// returned.
func TestScanChunksStopsAtEmitError(t *testing.T) {
	_, r := chunkRegion(t)
	stop := errors.New("pipe closed")
	calls := 0
	err := scanChunks(r, []byte("a/"), chunkLimit{entries: 1, bytes: 1 << 20}, func([]entry) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

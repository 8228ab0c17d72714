package lock

import (
	"os"
	"path/filepath"
	"testing"

	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps size bytes of the file at path, creating it if needed,
// read-write and MAP_SHARED, as the region's control file is mapped.
func mapFile(tb testing.TB, path string, size int) []byte {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		tb.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = unix.Munmap(mem) })
	return mem
}

// newLockFile creates a temp file holding an initialized lock and returns
// its path and the mapping.
func newLockFile(tb testing.TB) (string, []byte) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ctl")
	mem := mapFile(tb, path, Size)
	if err := Init(mem); err != nil {
		tb.Fatal(err)
	}
	return path, mem
}

func mustNew(tb testing.TB, mem []byte, opts Options) *RW {
	tb.Helper()
	rw, err := New(mem, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return rw
}

// heapLock returns an initialized lock in ordinary Go memory. In-process
// tests that run under the race detector use it: the detector tracks the
// atomics' happens-before edges only in memory the Go runtime allocated, not
// in a file mapping.
func heapLock(tb testing.TB) []byte {
	tb.Helper()
	words := make([]uint64, Size/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), Size)
	if err := Init(mem); err != nil {
		tb.Fatal(err)
	}
	return mem
}

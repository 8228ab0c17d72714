package lock

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func TestFutexWaitValueDiffers(t *testing.T) {
	var word uint32 = 7
	if err := FutexWait(&word, 8, time.Second); err != nil {
		t.Fatalf("FutexWait on a changed value = %v, want nil at once", err)
	}
}

func TestFutexWaitTimeout(t *testing.T) {
	var word uint32
	if err := FutexWait(&word, 0, 20*time.Millisecond); !errors.Is(err, ErrWaitTimeout) {
		t.Fatalf("FutexWait = %v, want ErrWaitTimeout", err)
	}
}

func TestFutexWakeNobody(t *testing.T) {
	var word uint32
	n, err := FutexWake(&word, 1)
	if err != nil || n != 0 {
		t.Fatalf("FutexWake with no waiter = %d, %v; want 0, nil", n, err)
	}
}

// TestFutexWakeShared waits on a word of a MAP_SHARED file mapping, through
// a second mapping of the same file: a non-private futex keys on the file
// page, not on the address, which is what makes it work across processes.
func TestFutexWakeShared(t *testing.T) {
	path, _ := newLockFile(t)
	a := mapFile(t, path, Size)
	b := mapFile(t, path, Size)
	wa := (*uint32)(unsafe.Pointer(&a[0]))
	wb := (*uint32)(unsafe.Pointer(&b[0]))
	atomic.StoreUint32(wa, 0)

	done := make(chan error, 1)
	go func() { done <- FutexWait(wa, 0, 10*time.Second) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		atomic.StoreUint32(wb, 1)
		n, err := FutexWake(wb, 1)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("FutexWait = %v, want nil after a wake", err)
			}
			_ = n
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("waiter on one mapping never woke from a wake on the other")
		}
		atomic.StoreUint32(wb, 0)
	}
}

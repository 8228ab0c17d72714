package shm

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations (linux/futex.h); FUTEX_PRIVATE_FLAG is deliberately absent.
const (
	futexWaitOp = 0
	futexWakeOp = 1
)

// futexWait sleeps while *addr == val, at most timeout. It uses the shared
// (non-private) futex so that a wake from another process reaches it.
func futexWait(addr *uint32, val uint32, timeout time.Duration) error {
	ts := unix.NsecToTimespec(int64(timeout))
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	if e != 0 && e != unix.EAGAIN && e != unix.ETIMEDOUT && e != unix.EINTR {
		return e
	}
	return nil
}

// futexWake wakes every process waiting on addr.
func futexWake(addr *uint32) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(1<<31-1), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// initLock prepares the lock area of a fresh control file.
func initLock(mem []byte) error { clear(mem); return nil }

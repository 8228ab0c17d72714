package lock

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations without FUTEX_PRIVATE_FLAG: the kernel then keys the wait
// queue on the physical page (inode and offset for a MAP_SHARED file
// mapping), so a waiter in one process is woken by a FUTEX_WAKE from another
// process that maps the same file. A private futex would key on the virtual
// address in one mm and never see the other process.
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// ErrWaitTimeout is returned by FutexWait when the timeout passed before a
// wake-up arrived.
var ErrWaitTimeout = errors.New("lock: futex wait timed out")

// FutexWait sleeps while *addr == val, until a FutexWake on the same word (in
// any process mapping it), a signal, or timeout. A negative timeout waits
// without limit. It returns nil when woken, when *addr already differed from
// val, or on a spurious wake-up: callers re-check their condition in a loop.
// It returns ErrWaitTimeout when the time ran out and any other error from
// the system call as is. addr must be 4-byte aligned. The wait blocks the
// calling OS thread; the Go scheduler runs other goroutines on other threads.
func FutexWait(addr *uint32, val uint32, timeout time.Duration) error {
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)),
		futexWait, uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrWaitTimeout
	default:
		return e
	}
}

// FutexWake wakes up to n waiters sleeping in FutexWait on addr, in any
// process, and returns how many it woke. It is a system call: callers keep a
// waiters count and call it only when someone waits.
func FutexWake(addr *uint32, n int) (int, error) {
	woken, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)),
		futexWake, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(woken), nil
}

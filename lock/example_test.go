package lock_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/shmreg/shmreg/lock"
)

// The creator initializes the lock once; every process then opens a handle
// on the same shared bytes (here an anonymous shared mapping; in shmreg,
// bytes 4096-8191 of the region's control file).
func Example() {
	mem, err := unix.Mmap(-1, 0, lock.Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer unix.Munmap(mem)
	if err := lock.Init(mem); err != nil {
		fmt.Println(err)
		return
	}
	rw, err := lock.New(mem, lock.Options{}) // Timeout: lock.DefaultTimeout
	if err != nil {
		fmt.Println(err)
		return
	}

	w, err := rw.Lock()
	if err != nil {
		fmt.Println(err)
		return
	}
	// ... write ...
	fmt.Println("forced:", w.Forced, "recovered:", w.Recovered)
	if err := rw.Unlock(w); err != nil {
		fmt.Println(err) // lock.ErrLockLost if it was forced from us
	}

	r, _ := rw.RLock()
	fmt.Println("readers:", rw.Stats().Readers)
	_ = rw.RUnlock(r)
	// Output:
	// forced: 0 recovered: 0
	// readers: 1
}

// Self and Alive identify a process across pid reuse.
func ExampleAlive() {
	me, err := lock.Self()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(lock.Alive(me), lock.Alive(lock.Holder{Pid: me.Pid, Start: me.Start + 1}))
	// Output: true false
}

// FutexWait returns at once when the word no longer holds the expected value.
func ExampleFutexWait() {
	var seq uint32 = 1
	fmt.Println(lock.FutexWait(&seq, 0, -1))
	// Output: <nil>
}

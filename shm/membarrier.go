package shm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Asymmetric fences with membarrier(2).
//
// A read publishes its epoch in its slot and then loads the generation
// again; the writer bumps the generation and then loads every slot. Each
// side stores one word and then loads the other side's: on x86 (and
// everywhere else) the store can sit in the store buffer while the load
// runs, so without a fence both sides can miss each other, and the writer
// could reuse a block a read is about to reach.
//
// The fence is needed on every read but only on the writer's rare
// reclamation pass, so it is moved entirely to the writer: a reader process
// registers once for MEMBARRIER_CMD_GLOBAL_EXPEDITED and from then on
// publishes with plain stores; before it scans the slots the writer issues
// the expedited barrier, which runs a full memory barrier on every CPU that
// is running a thread of a registered process (about half a microsecond
// here). After it returns, every epoch a reader stored before that point is
// visible to the scan, and every load a reader makes after it sees the new
// generation. Either way the writer and the read agree. A process whose
// registration fails (an old kernel, a seccomp filter) publishes with a
// sequentially consistent store instead, as a C reader that does not
// register must.

// The membarrier(2) commands this package uses (linux/membarrier.h).
const (
	membarrierCmdQuery                   = 0
	membarrierCmdGlobal                  = 1 << 0
	membarrierCmdGlobalExpedited         = 1 << 1
	membarrierCmdRegisterGlobalExpedited = 1 << 2
	membarrierCmdsUsed                   = membarrierCmdGlobal | membarrierCmdGlobalExpedited | membarrierCmdRegisterGlobalExpedited
)

func membarrier(cmd uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_MEMBARRIER, cmd, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// readerRegistration registers this process for expedited global barriers
// once; its result says whether reads may publish with plain stores.
var readerRegistration = sync.OnceValue(func() bool {
	cmds, err := membarrier(membarrierCmdQuery)
	if err != nil || cmds&membarrierCmdsUsed != membarrierCmdsUsed {
		return false
	}
	_, err = membarrier(membarrierCmdRegisterGlobalExpedited)
	return err == nil
})

// writerBarrier runs a full memory barrier on every CPU running a reader
// that relies on it: the expedited command for registered processes, then,
// only if that fails, the slow global one (which waits for every CPU to
// pass through the scheduler). It fails only if neither exists, and then
// the caller must not reuse memory.
func writerBarrier() error {
	if _, err := membarrier(membarrierCmdGlobalExpedited); err == nil {
		return nil
	}
	if _, err := membarrier(membarrierCmdGlobal); err != nil {
		return fmt.Errorf("shm: membarrier: %w", err)
	}
	return nil
}

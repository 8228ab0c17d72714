package shm

import "sync/atomic"

// idleSlot sets a slot's epoch to 0 (idle) at the end of a read and returns
// what it held. The store needs release ordering: once the writer sees 0,
// every load the read made must have been satisfied. On amd64 a plain store
// has it (a load is never reordered after a later store), so this costs no
// fence. A forced mark the writer sets between the load and the store is
// lost, harmlessly: the read's loads were already satisfied before the load
// that saw no mark, which came before the writer's mark and any reuse.
func idleSlot(epoch *uint64) uint64 {
	old := atomic.LoadUint64(epoch)
	*epoch = 0
	return old
}

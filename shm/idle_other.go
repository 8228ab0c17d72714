//go:build !amd64

package shm

import "sync/atomic"

// idleSlot sets a slot's epoch to 0 (idle) at the end of a read and returns
// what it held. Outside amd64 loads may be reordered after later stores, and
// Go offers no release-only store, so this is an atomic swap: a full barrier
// that orders the read's loads before both the check and the store.
func idleSlot(epoch *uint64) uint64 { return atomic.SwapUint64(epoch, 0) }

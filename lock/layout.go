package lock

import (
	"fmt"
	"unsafe"
)

// The lock's 4096 bytes, declared once. docs/LAYOUT.md ("The reader/writer
// lock") draws the same thing byte by byte and layout_test.go checks that the
// two agree.
//
//	 off  size
//	   0     4  seq        atomic futex word: bumped after every release a waiter may care about
//	   4     4  waiters    atomic: callers inside the wait protocol (see lock.go)
//	   8     8  writer     atomic holder word of the write side; 0 = free
//	  16     8  forced     atomic: live holders taken away after Timeout or by ForceUnlock
//	  24     8  recovered  atomic: dead holders cleared
//	  32     4  magic      "RWLK" little-endian; written last by Init
//	  36     4  version    layout version, 1
//	  40     4  nreaders   number of reader slots, 128
//	  44    20  reserved, 0
//	  64  1024  readers    128 atomic holder words of the read side; 0 = free
//	1088  3008  reserved, 0
//
// A holder word packs who holds and which acquisition it is (see proc.go):
//
//	 63 62          48 47                      22 21               0
//	+--+-------------+--------------------------+------------------+
//	|D |nonce (15 b) | start time mod 2^26 ticks|   pid (22 bits)  |
//	+--+-------------+--------------------------+------------------+
//
// D (draining) is set only in the writer word, while its writer waits for
// the readers to leave.
const (
	// Size is the number of bytes the lock occupies: bytes 4096-8191 of the
	// control file.
	Size = 4096

	// Readers is the number of reader slots: at most this many read
	// acquisitions, across all processes, can be held at once.
	Readers = 128

	layoutMagic   = 0x4b4c5752 // "RWLK" in little-endian bytes
	layoutVersion = 1

	headerSize  = 64
	readersOff  = headerSize
	readersSize = 8 * Readers
)

// header is the first cache line. Every field is shared by all processes
// that map the control file; lock.go's opening comment says who writes each
// one and with what ordering.
type header struct {
	seq       uint32
	waiters   uint32
	writer    uint64
	forced    uint64
	recovered uint64
	magic     uint32
	version   uint32
	nreaders  uint32
	_         [20]byte
}

// shared is the whole 4096-byte lock.
type shared struct {
	hdr     header
	readers [Readers]uint64
	_       [Size - headerSize - readersSize]byte
}

// view is the one place that turns the caller's bytes into the shared
// struct. mem must be Size bytes, 8-byte aligned (checked by check).
func view(mem []byte) *shared {
	return (*shared)(unsafe.Pointer(&mem[0]))
}

// check validates the length and alignment of mem.
func check(mem []byte) error {
	if len(mem) != Size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrLayout, len(mem), Size)
	}
	if uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		return fmt.Errorf("%w: memory not 8-byte aligned", ErrLayout)
	}
	return nil
}

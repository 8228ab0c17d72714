package shm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The region's layout, declared once. docs/LAYOUT.md draws it byte by byte
// and include/shmreg.h declares it for C; layout_test.go checks that the
// three agree. All fields are little-endian and naturally aligned.

// LayoutVersion is the version of the layout this package writes. Version
// 2 keeps a value of up to inlineMax bytes inside its node's block, which
// only writers need to know: readers follow the value word wherever it
// points, so this package reads versions 1 and 2 alike. A writer that opens
// a version-1 region rebuilds it as version 2 (readers move to the new file
// as after any rebuild), and a version-1 writer refuses a version-2 region,
// whose node blocks it would size wrongly. Any other version is refused
// with ErrLayoutVersion.
const LayoutVersion = 2

// oldestReadableVersion is the oldest layout a reader of this build reads.
const oldestReadableVersion = 1

// ControlVersion is the version of the control file's layout (lock, reader
// slots, notification word), which did not change with data version 2.
const ControlVersion = 1

// inlineMax is the largest value a version-2 writer stores inside its
// node's block, right after the key, so that a lookup finds the slot, then
// node, key and value in one place (one page, and the value usually in the
// node's cache line or the next). Larger values live apart, allocated
// downward from the top of the pool, where they do not dilute the nodes.
const inlineMax = 4096

const (
	dataMagic = "SHMREGD\x00"
	ctlMagic  = "SHMREGC\x00"

	headerSize  = 4096 // the data header; the pool starts right after it
	ctlLockOff  = 4096 // the reader/writer lock's area in the control file
	ctlSlotsOff = 8192 // the first reader slot in the control file
	slotSize    = 64

	// Bits of dataHeader.state.
	stateSuperseded = 1 << 0 // a newer file replaced this one at the same path
	stateCommitting = 1 << 1 // a commit is under way; set at a writer's open = it died mid-commit

	// epochForced is the bit the writer sets in the epoch of a slot held past
	// its lease (the low bits then hold the generation at which it forced it).
	epochForced = 1 << 63

	// Index slot values other than node references.
	slotEmpty     = 0
	slotTombstone = 1

	indexHeaderSize = 32
	placeCenterLen  = 64
)

// dataHeader is the first 4096 bytes of the data file.
type dataHeader struct {
	magic      [8]byte
	version    uint32
	headerSize uint32
	fileSize   uint64
	poolStart  uint64
	createdNs  uint64
	maxHeight  uint32
	_          uint32
	head       uint64
	_          uint64

	// Hot line (offset 64): loaded by every reader operation, stored only by
	// the writer, each with atomic release stores / acquire loads.
	state      uint64 // stateSuperseded | stateCommitting
	generation uint64 // commits ever made; also the readers' epoch
	index      uint64 // offset of the current index table
	_          [5]uint64

	// Writer line (offset 128): the writer's bookkeeping. Only the writer
	// stores; readers load them (atomically) for statistics only.
	alloc         uint64 // low cursor: next free byte for nodes, keys, index tables (grows up)
	entries       uint64 // live keys
	liveBytes     uint64 // key + value bytes of live keys
	garbageBytes  uint64 // retired bytes not reusable yet
	writerPid     uint64
	compactions   uint64
	placeRevision uint64
	valueAlloc    uint64               // high cursor: lowest byte used by values (grows down from fileSize)
	placeCenter   [placeCenterLen]byte // offset 192

	// Reclamation line (offset 256), written by the writer for statistics.
	retiredBytes  uint64 // retired, waiting for readers to move past them
	reusableBytes uint64 // on the writer's free lists
	oldestEpoch   uint64 // oldest epoch a live reader held at the last reclamation pass
	_             [29]uint64
	freeByClass   [numClasses]uint64 // offset 512: reusable bytes per size class

	_ [headerSize - 512 - 8*numClasses]byte
}

// ctlHeader is the first 4096 bytes of the control file. Readers write to
// this file, so the writer trusts nothing in it but the futex word and its
// own counters.
type ctlHeader struct {
	magic     [8]byte
	version   uint32
	slotCount uint32
	fileSize  uint64
	createdNs uint64
	_         [4]uint64

	// Notify line (offset 64).
	notifySeq     uint32 // futex word: +1 after every commit (writer)
	notifyWaiters uint32 // processes waiting on notifySeq (each waiter +1/-1)
	_             [7]uint64

	// Counters line (offset 128), written by the writer.
	slotsForced uint64
	slotsReaped uint64

	_ [headerSize - 144]byte
}

// readerSlot is one reader's cache line in the control file. Only its owner
// writes owner, pid and (except for FORCED) epoch.
type readerSlot struct {
	owner uint64 // 0 = free; else pid<<32 | nonce
	epoch uint64 // 0 = idle; else the generation loaded when the read began
	pid   uint32
	_     [44]byte
}

// indexHeader precedes the slots of an index table.
type indexHeader struct {
	capacity   uint64 // a power of two
	used       uint64
	tombstones uint64
	_          uint64
}

// The accessors below are the only places in the package that turn an offset
// into a pointer. Each is given a mapping whose length the caller has checked
// to cover the structure.

func headerAt(mem []byte) *dataHeader { return (*dataHeader)(unsafe.Pointer(&mem[0])) }

func ctlAt(mem []byte) *ctlHeader { return (*ctlHeader)(unsafe.Pointer(&mem[0])) }

func slotAt(mem []byte, i int) *readerSlot {
	return (*readerSlot)(unsafe.Pointer(&mem[ctlSlotsOff+i*slotSize]))
}

func indexAt(mem []byte, off uint64) *indexHeader {
	return (*indexHeader)(unsafe.Pointer(&mem[off]))
}

// indexSlots returns the slot array of the table at off, which must hold n
// slots inside mem.
func indexSlots(mem []byte, off, n uint64) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off+indexHeaderSize])), n)
}

// word returns the 32-bit word at off, for the futex.
func word32(mem []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }

// replaceWithZeros maps private zero-filled memory over mem, in place: the
// file behind it is no longer touched through these addresses, while a
// straggling access to them still lands on mapped memory. It is for
// mappings that reads outliving their Reader's Close may still use; the
// memory is never unmapped. A data mapping stays read-only (and costs no
// commit charge); the control mapping, which reads store to, is writable
// without reserving swap.
func replaceWithZeros(mem []byte, writable bool) error {
	if len(mem) == 0 {
		return nil
	}
	prot, flags := unix.PROT_READ, unix.MAP_FIXED|unix.MAP_PRIVATE|unix.MAP_ANONYMOUS
	if writable {
		prot |= unix.PROT_WRITE
		flags |= unix.MAP_NORESERVE
	}
	_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(&mem[0]), uintptr(len(mem)), prot, flags)
	return err
}

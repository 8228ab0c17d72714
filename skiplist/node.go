package skiplist

import (
	"sync/atomic"
	"unsafe"
)

// MaxHeight is the tallest tower a node may have. With a branching factor of
// 4 a list of 4^16 (about 4 billion) keys still has the expected O(log n)
// search; taller towers would only waste eight bytes a level in the head.
const MaxHeight = 16

// nodeHeaderSize is the size of a node without its tower: value, key,
// height and a reserved word. The tower of next offsets follows directly.
const nodeHeaderSize = 24

// node is the fixed part of a skiplist node as it lies in the region (see
// docs/LAYOUT.md). Only the first height entries of next exist in memory: a
// node's tower is truncated to its height so that a short node (three
// quarters of them have height 1) costs 32 bytes, not 152. For that reason a
// *node is only ever obtained through nodeAt, which has checked that the
// truncated tower lies inside the mapping, and next is only indexed below
// height.
type node struct {
	value  uint64 // pair-second: packed value offset/length; 0 = absent. Writer stores, readers load, both atomic.
	key    uint64 // pair-first: packed key offset/length; written before the node is linked, never changed.
	height uint32 // 1..MaxHeight; written before the node is linked, never changed.
	// inline is the writer's own record of the node's block (layout
	// version 2; readers ignore it): 0 = the block is node and key only
	// (the value, if any, lives apart); n+1 = the block also holds n value
	// bytes after the key, 8-byte aligned. Written before the node is
	// linked, never changed.
	inline uint32
	next   [MaxHeight]uint64 // offsets of successors; atomic.
}

// Pair packs an offset and a length into one word: the offset in the low 40
// bits, the length in the high 24. Zero is reserved for "absent".
func Pair(off, length uint64) uint64 { return off | length<<40 }

// Unpair splits a word made by Pair.
func Unpair(w uint64) (off, length uint64) { return w & (1<<40 - 1), w >> 40 }

// MaxPairOffset and MaxPairLength bound what a pair can express.
const (
	MaxPairOffset = 1<<40 - 1
	MaxPairLength = 1<<24 - 1
)

// NodeSize is the number of bytes a node of the given height occupies.
func NodeSize(height int) uint64 { return nodeHeaderSize + 8*uint64(height) }

// nodeAt returns the node at off, or nil if a node of its claimed height does
// not fit inside mem at an aligned offset at or past base. It is the only
// place that turns an offset into a node pointer.
func nodeAt(mem []byte, base, off uint64) *node {
	if off < base || off%8 != 0 || off+nodeHeaderSize+8 > uint64(len(mem)) {
		return nil
	}
	n := (*node)(unsafe.Pointer(&mem[off]))
	h := atomic.LoadUint32(&n.height)
	if h == 0 || h > MaxHeight || off+NodeSize(int(h)) > uint64(len(mem)) {
		return nil
	}
	return n
}

// rawNode is nodeAt without the checks, for the writer's own nodes whose
// bounds it has just checked (a node it allocated, or one it appended).
func rawNode(mem []byte, off uint64) *node { return (*node)(unsafe.Pointer(&mem[off])) }

func (n *node) loadNext(level int) uint64 { return atomic.LoadUint64(&n.next[level]) }

func (n *node) storeNext(level int, off uint64) { atomic.StoreUint64(&n.next[level], off) }

func (n *node) loadValue() uint64 { return atomic.LoadUint64(&n.value) }

func (n *node) storeValue(w uint64) { atomic.StoreUint64(&n.value, w) }

func (n *node) levels() int { return int(atomic.LoadUint32(&n.height)) }

// bytesAt returns mem[off:off+length] or false if it is out of bounds.
func bytesAt(mem []byte, w uint64) ([]byte, bool) {
	off, length := Unpair(w)
	if off+length > uint64(len(mem)) {
		return nil, false
	}
	return mem[off : off+length : off+length], true
}

package skiplist

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrExists is returned by Link when a node with the same key is already in
// the list; the error's companion offset names that node.
var ErrExists = errors.New("skiplist: key already linked")

// Allocator hands out pool memory to the writer. Alloc returns the offset of
// size bytes, 8-byte aligned, that no reader can currently reach.
type Allocator interface {
	Alloc(size uint64) (uint64, error)
}

// Writer is the single writer of a list. It is not safe for concurrent use;
// readers may walk the list while it writes.
type Writer struct {
	List
	alloc Allocator
	rng   uint64
}

// NewWriter returns the writer for the list whose head is at head. seed
// varies tower heights between processes; any non-zero value works.
func NewWriter(mem []byte, base, head uint64, alloc Allocator, seed uint64) (*Writer, error) {
	l, err := New(mem, base, head)
	if err != nil {
		return nil, err
	}
	if seed == 0 {
		seed = 0x9E3779B97F4A7C15
	}
	return &Writer{List: l, alloc: alloc, rng: seed}, nil
}

// InitHead writes an empty head node at off, which must have room for
// NodeSize(MaxHeight) bytes. Only a region's creator calls it.
func InitHead(mem []byte, base, off uint64) error {
	if off < base || off%8 != 0 || off+NodeSize(MaxHeight) > uint64(len(mem)) {
		return fmt.Errorf("skiplist: no room for a head node at %d", off)
	}
	clear(mem[off : off+NodeSize(MaxHeight)])
	mem[off+16] = MaxHeight // height, little-endian uint32
	return nil
}

// randomHeight draws a tower height with P(h > k) = 4^-k (xorshift64).
func (w *Writer) randomHeight() int {
	x := w.rng
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	w.rng = x
	h := 1
	for h < MaxHeight && x&3 == 0 {
		h++
		x >>= 2
	}
	return h
}

// NewNode allocates a node for key, with the key's bytes right after its
// tower, and writes everything but its links and its value. The node is
// unreachable until Link.
func (w *Writer) NewNode(key []byte) (uint64, error) {
	off, _, err := w.newNode(w.randomHeight(), key, nil, false)
	return off, err
}

// NewEntry is NewNode with the value's bytes in the node's own block, right
// after the key (8-byte aligned): a lookup then reads the node, its key and
// its value from one place. It returns the node's offset and the pair word
// of the value, which the caller publishes with SetValue after Link.
func (w *Writer) NewEntry(key, value []byte) (off, valueWord uint64, err error) {
	return w.newNode(w.randomHeight(), key, value, true)
}

// InlineOffset is where a node of the given height and key length keeps an
// inline value: right after the key, rounded up to 8 bytes.
func InlineOffset(off uint64, height int, keyLen uint64) uint64 {
	return off + NodeSize(height) + (keyLen+7)&^7
}

// BlockSize is the size of the allocation holding a node of the given
// height, its key and, if it has one, its inline value.
func BlockSize(height int, keyLen uint64, inlineLen uint64, inline bool) uint64 {
	if !inline {
		return NodeSize(height) + keyLen
	}
	return NodeSize(height) + (keyLen+7)&^7 + inlineLen
}

func (w *Writer) newNode(h int, key, value []byte, inline bool) (off, valueWord uint64, err error) {
	size := BlockSize(h, uint64(len(key)), uint64(len(value)), inline)
	off, err = w.alloc.Alloc(size)
	if err != nil {
		return 0, 0, err
	}
	keyOff := off + NodeSize(h)
	if off%8 != 0 || off+size > uint64(len(w.mem)) || off+size > MaxPairOffset {
		return 0, 0, fmt.Errorf("skiplist: allocator returned %d+%d, outside the region", off, size)
	}
	b := w.mem[off : off+size]
	clear(b[:NodeSize(h)])
	copy(b[NodeSize(h):], key)
	n := rawNode(w.mem, off)
	n.key = Pair(keyOff, uint64(len(key)))
	n.height = uint32(h)
	if inline {
		n.inline = uint32(len(value)) + 1
		vOff := InlineOffset(off, h, uint64(len(key)))
		clear(w.mem[keyOff+uint64(len(key)) : vOff]) // the alignment padding
		copy(w.mem[vOff:], value)
		valueWord = Pair(vOff, uint64(len(value)))
	}
	return off, valueWord, nil
}

// Inline reports whether the node at off was written with its value
// inside its block (NewEntry, AppendEntry, Replace with inline), from the
// node's own record: where a value word points proves nothing, since a
// value stored apart can start right where an inline one would.
func (l *List) Inline(off uint64) (bool, error) {
	n, err := l.node(off)
	if err != nil {
		return false, err
	}
	return n.inline != 0, nil
}

// Block returns the size of the allocation holding the node at off: node,
// key and, when it has one, its inline value.
func (l *List) Block(off uint64) (uint64, error) {
	n, err := l.node(off)
	if err != nil {
		return 0, err
	}
	_, kLen := Unpair(n.key)
	if n.inline == 0 {
		return BlockSize(n.levels(), kLen, 0, false), nil
	}
	return BlockSize(n.levels(), kLen, uint64(n.inline-1), true), nil
}

// Replace puts a new node in the place of the linked node at old: same key,
// same height, and the value given (inline, or the word of a value stored
// apart when inline is false), already published in the new node before it
// becomes reachable. Then old's value word is pointed at the same bytes (the
// one store at which every reader sees the new value), and the new node
// takes old's successors and is linked in old's place bottom-up, one atomic
// store per level: a reader meets either node at any level, both with the
// same key and value, and old keeps its tower so a reader standing on it
// still reaches a live successor. It returns the new node's offset; the
// caller points the index at it, after which old is unreachable for new
// readers.
func (w *Writer) Replace(old uint64, value []byte, inline bool, word uint64) (uint64, error) {
	on, err := w.node(old)
	if err != nil {
		return 0, err
	}
	key, err := w.Key(old)
	if err != nil {
		return 0, err
	}
	var preds [MaxHeight]uint64
	if _, err := w.seek(key, &preds); err != nil {
		return 0, err
	}
	h := on.levels()
	off, vw, err := w.newNode(h, key, value, inline)
	if err != nil {
		return 0, err
	}
	if !inline {
		vw = word
	}
	n := rawNode(w.mem, off)
	for i := 0; i < h; i++ {
		n.storeNext(i, on.loadNext(i))
	}
	n.storeValue(vw)
	// The moment the key's value changes for every reader: the old node,
	// which the index and the list still lead to, takes the new value's
	// word (bytes inside the new node, or stored apart), so a reader never
	// sees the new value through one path and then the old one through the
	// other while the new node takes the old one's places.
	on.storeValue(vw)
	for i := 0; i < h; i++ {
		p, err := w.node(preds[i])
		if err != nil {
			return 0, err
		}
		if p.loadNext(i) == old {
			p.storeNext(i, off)
		}
	}
	return off, nil
}

// Link makes the node at off reachable: it sets the node's tower to its
// successors and then publishes it bottom-up, one atomic store per level, so
// a concurrent reader sees a valid list at every instant. If a node with the
// same key is already linked, Link returns its offset and ErrExists.
func (w *Writer) Link(off uint64) (uint64, error) {
	n, err := w.node(off)
	if err != nil {
		return 0, err
	}
	key, err := w.Key(off)
	if err != nil {
		return 0, err
	}
	var preds [MaxHeight]uint64
	succ, err := w.seek(key, &preds)
	if err != nil {
		return 0, err
	}
	if succ != 0 {
		k, err := w.Key(succ)
		if err != nil {
			return 0, err
		}
		if bytes.Equal(k, key) {
			return succ, ErrExists
		}
	}
	h := n.levels()
	for i := 0; i < h; i++ {
		p, err := w.node(preds[i])
		if err != nil {
			return 0, err
		}
		n.storeNext(i, p.loadNext(i))
	}
	for i := 0; i < h; i++ {
		p, _ := w.node(preds[i])
		p.storeNext(i, off)
	}
	return 0, nil
}

// Unlink removes the node at off from every level it is linked at, top-down.
// The node's own tower is left intact so that a reader standing on it still
// reaches a live successor. Levels where the node is not linked (a writer
// died while linking it) are skipped.
func (w *Writer) Unlink(off uint64) error {
	n, err := w.node(off)
	if err != nil {
		return err
	}
	key, err := w.Key(off)
	if err != nil {
		return err
	}
	var preds [MaxHeight]uint64
	if _, err := w.seek(key, &preds); err != nil {
		return err
	}
	for i := n.levels() - 1; i >= 0; i-- {
		p, err := w.node(preds[i])
		if err != nil {
			return err
		}
		if p.loadNext(i) == off {
			p.storeNext(i, n.loadNext(i))
		}
	}
	return nil
}

// SetValue stores the packed value word of the node at off: the single
// atomic store that publishes, replaces or (with 0) hides a value.
func (w *Writer) SetValue(off, word uint64) error {
	n, err := w.node(off)
	if err != nil {
		return err
	}
	n.storeValue(word)
	return nil
}

// Remap points the writer at a new mapping of the same region (after the
// file was grown in place). Offsets stay valid.
func (w *Writer) Remap(mem []byte) {
	w.mem = mem
	w.maxSteps = len(mem)/int(NodeSize(1)) + 1
}

// Appender builds a list from keys supplied in strictly increasing order in
// O(1) per key, by remembering the last node at every level. It is used to
// build a fresh region (compaction) before any reader can see it.
type Appender struct {
	w    *Writer
	last [MaxHeight]uint64
	prev []byte
}

// NewAppender returns an appender for w's list, which must be empty.
func NewAppender(w *Writer) *Appender {
	a := &Appender{w: w}
	for i := range a.last {
		a.last[i] = w.head
	}
	return a
}

// Append adds key with the given packed value word and returns the node's
// offset.
func (a *Appender) Append(key []byte, value uint64) (uint64, error) {
	return a.append(key, nil, false, value)
}

// AppendEntry adds key with value inline in its node (see NewEntry).
func (a *Appender) AppendEntry(key, value []byte) (uint64, error) {
	return a.append(key, value, true, 0)
}

func (a *Appender) append(key, value []byte, inline bool, word uint64) (uint64, error) {
	if a.prev != nil && bytes.Compare(key, a.prev) <= 0 {
		return 0, fmt.Errorf("skiplist: append of %q after %q is out of order", key, a.prev)
	}
	off, vw, err := a.w.newNode(a.w.randomHeight(), key, value, inline)
	if err != nil {
		return 0, err
	}
	if !inline {
		vw = word
	}
	n := rawNode(a.w.mem, off)
	for i := 0; i < n.levels(); i++ {
		p := rawNode(a.w.mem, a.last[i])
		p.storeNext(i, off)
		a.last[i] = off
	}
	n.storeValue(vw)
	k, _ := a.w.Key(off)
	a.prev = k
	return off, nil
}

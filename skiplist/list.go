// Package skiplist is the ordered index of a shmreg region: a skiplist whose
// nodes, keys and values live in a shared memory pool and refer to each other
// by offsets from the start of the pool's mapping, never by pointers.
//
// One writer and any number of concurrent readers, in any processes, share a
// list. Readers take no lock: the writer fully writes a node before linking
// it and links it bottom-up, one atomic store per level, so a reader walking
// the list sees either the old or the new link and every node it reaches is
// complete. Readers never trust the bytes they walk: every offset is checked
// against the mapping and every walk is bounded, so a corrupt region yields
// ErrCorrupt instead of a crash or an endless loop.
package skiplist

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrCorrupt reports that the list's bytes break an invariant: an offset out
// of bounds, a tower taller than the node, keys out of order, or a cycle.
var ErrCorrupt = errors.New("skiplist: corrupt region")

// List is a read-only view of a skiplist laid out in mem. It is a small value
// that is safe to copy and to use from many goroutines.
type List struct {
	mem  []byte
	base uint64 // lowest offset a node may have (the start of the pool)
	head uint64 // offset of the head node, whose tower is MaxHeight tall
	// maxSteps bounds every walk: no valid list has more nodes than fit in
	// the mapping, so a walk longer than that has met a cycle.
	maxSteps int
}

// New returns a view of the list whose head node is at head. base is the
// lowest offset any node may occupy.
func New(mem []byte, base, head uint64) (List, error) {
	l := List{mem: mem, base: base, head: head, maxSteps: len(mem)/int(NodeSize(1)) + 1}
	hn := nodeAt(mem, base, head)
	if hn == nil || hn.levels() != MaxHeight {
		return List{}, fmt.Errorf("%w: head node at %d is not a %d-level node inside the region", ErrCorrupt, head, MaxHeight)
	}
	return l, nil
}

// Head returns the offset of the head node.
func (l *List) Head() uint64 { return l.head }

// node returns the node at off, or ErrCorrupt.
func (l *List) node(off uint64) (*node, error) {
	n := nodeAt(l.mem, l.base, off)
	if n == nil {
		return nil, fmt.Errorf("%w: no node fits at offset %d", ErrCorrupt, off)
	}
	return n, nil
}

// Key returns the key bytes of the node at off, aliasing the mapping.
func (l *List) Key(off uint64) ([]byte, error) {
	n, err := l.node(off)
	if err != nil {
		return nil, err
	}
	k, ok := bytesAt(l.mem, n.key)
	if !ok {
		return nil, fmt.Errorf("%w: key of node %d out of bounds", ErrCorrupt, off)
	}
	return k, nil
}

// Entry returns the key bytes and the packed value word of the node at off
// in one bounds check: the point lookup's hot path.
func (l *List) Entry(off uint64) ([]byte, uint64, error) {
	n := nodeAt(l.mem, l.base, off)
	if n == nil {
		return nil, 0, fmt.Errorf("%w: no node fits at offset %d", ErrCorrupt, off)
	}
	k, ok := bytesAt(l.mem, n.key)
	if !ok {
		return nil, 0, fmt.Errorf("%w: key of node %d out of bounds", ErrCorrupt, off)
	}
	return k, n.loadValue(), nil
}

// Height returns the number of levels of the node at off.
func (l *List) Height(off uint64) (int, error) {
	n, err := l.node(off)
	if err != nil {
		return 0, err
	}
	return n.levels(), nil
}

// Next returns the offset of the node after off at level (0 = end).
func (l *List) Next(off uint64, level int) (uint64, error) {
	n, err := l.node(off)
	if err != nil {
		return 0, err
	}
	if level < 0 || level >= n.levels() {
		return 0, fmt.Errorf("%w: level %d of node %d with height %d", ErrCorrupt, level, off, n.levels())
	}
	return n.loadNext(level), nil
}

// KeyWord returns the packed key word of the node at off.
func (l *List) KeyWord(off uint64) (uint64, error) {
	n, err := l.node(off)
	if err != nil {
		return 0, err
	}
	return n.key, nil
}

// ValueWord returns the packed value word of the node at off (0 = absent).
func (l *List) ValueWord(off uint64) (uint64, error) {
	n, err := l.node(off)
	if err != nil {
		return 0, err
	}
	return n.loadValue(), nil
}

// Bytes resolves a packed pair word to the bytes it refers to.
func (l *List) Bytes(w uint64) ([]byte, error) {
	b, ok := bytesAt(l.mem, w)
	if !ok {
		off, n := Unpair(w)
		return nil, fmt.Errorf("%w: %d bytes at offset %d run past the region", ErrCorrupt, n, off)
	}
	return b, nil
}

// seek descends from the head and returns the first node at level 0 whose key
// is >= key (0 if none). If preds is not nil it receives, for every level,
// the last node whose key is < key.
func (l *List) seek(key []byte, preds *[MaxHeight]uint64) (uint64, error) {
	x := l.head
	xn, err := l.node(x)
	if err != nil {
		return 0, err
	}
	budget := l.maxSteps
	var next uint64
	for level := MaxHeight - 1; level >= 0; level-- {
		for {
			next = xn.loadNext(level)
			if next == 0 {
				break
			}
			nn, err := l.node(next)
			if err != nil {
				return 0, err
			}
			if nn.levels() <= level {
				return 0, fmt.Errorf("%w: node %d is linked at level %d above its height %d", ErrCorrupt, next, level, nn.levels())
			}
			k, ok := bytesAt(l.mem, nn.key)
			if !ok {
				return 0, fmt.Errorf("%w: key of node %d out of bounds", ErrCorrupt, next)
			}
			if bytes.Compare(k, key) >= 0 {
				break
			}
			x, xn = next, nn
			if budget--; budget <= 0 {
				return 0, fmt.Errorf("%w: walk longer than the region can hold (a cycle)", ErrCorrupt)
			}
		}
		if preds != nil {
			preds[level] = x
		}
	}
	return next, nil
}

// Find returns the offset of the node whose key equals key, or 0 if there is
// none. The node's value may be absent (deleted, or not yet published).
func (l *List) Find(key []byte) (uint64, error) {
	off, err := l.seek(key, nil)
	if err != nil || off == 0 {
		return 0, err
	}
	k, err := l.Key(off)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(k, key) {
		return 0, nil
	}
	return off, nil
}

// Iterator walks the live entries of a list in key order. Its Key and Value
// alias the mapping: they are valid only as long as the mapping is and the
// memory has not been reused.
type Iterator struct {
	l      *List
	cur    uint64
	key    []byte
	value  []byte
	err    error
	budget int
}

// Seek returns an iterator positioned at the first live entry whose key is
// >= key. Seek(nil) starts at the first entry.
func (l *List) Seek(key []byte) Iterator {
	it := Iterator{l: l, budget: l.maxSteps}
	off, err := l.seek(key, nil)
	if err != nil {
		it.err = err
		return it
	}
	it.settle(off)
	return it
}

// settle moves to the first node at or after off that has a live value.
func (it *Iterator) settle(off uint64) {
	prev := it.key
	for off != 0 {
		if it.budget--; it.budget <= 0 {
			it.fail(fmt.Errorf("%w: walk longer than the region can hold (a cycle)", ErrCorrupt))
			return
		}
		n, err := it.l.node(off)
		if err != nil {
			it.fail(err)
			return
		}
		k, ok := bytesAt(it.l.mem, n.key)
		if !ok {
			it.fail(fmt.Errorf("%w: key of node %d out of bounds", ErrCorrupt, off))
			return
		}
		if prev != nil && bytes.Compare(k, prev) <= 0 {
			it.fail(fmt.Errorf("%w: keys out of order at node %d", ErrCorrupt, off))
			return
		}
		if w := n.loadValue(); w != 0 {
			v, ok := bytesAt(it.l.mem, w)
			if !ok {
				it.fail(fmt.Errorf("%w: value of node %d out of bounds", ErrCorrupt, off))
				return
			}
			it.cur, it.key, it.value = off, k, v
			return
		}
		prev = k
		off = n.loadNext(0)
	}
	it.cur, it.key, it.value = 0, nil, nil
}

func (it *Iterator) fail(err error) {
	it.err = err
	it.cur, it.key, it.value = 0, nil, nil
}

// Valid reports whether the iterator is at an entry.
func (it *Iterator) Valid() bool { return it.cur != 0 }

// Key returns the current entry's key.
func (it *Iterator) Key() []byte { return it.key }

// Value returns the current entry's value.
func (it *Iterator) Value() []byte { return it.value }

// Node returns the offset of the current node.
func (it *Iterator) Node() uint64 { return it.cur }

// Err returns the error that stopped the iterator, if any.
func (it *Iterator) Err() error { return it.err }

// Next advances to the next live entry.
func (it *Iterator) Next() {
	if it.cur == 0 {
		return
	}
	n, err := it.l.node(it.cur)
	if err != nil {
		it.fail(err)
		return
	}
	it.settle(n.loadNext(0))
}

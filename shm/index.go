package shm

import (
	"bytes"
	"fmt"
	"math/bits"
	"sync/atomic"

	"github.com/shmreg/shmreg/skiplist"
)

// The point-lookup index: an open-addressing hash table (linear probing) of
// node offsets beside the skiplist, so that Get is O(1) while scans keep the
// skiplist's order. Its layout and the writer's rules are in docs/LAYOUT.md:
// the writer never moves a published slot; it grows the table by building a
// complete new one and publishing its offset with one atomic store, so a
// reader always probes a table that is whole.

const (
	minIndexCap = 1024
	// nodeMask extracts the node offset from a slot; the rest is the tag.
	nodeMask = skiplist.MaxPairOffset
)

// table is a view of one index table.
type table struct {
	off   uint64
	hdr   *indexHeader
	slots []uint64
	mask  uint64
}

// tableAt validates and returns the table at off.
func (m *mapping) tableAt(off uint64) (table, error) {
	size := m.size()
	if off < headerSize || off%8 != 0 || off > size-indexHeaderSize {
		return table{}, fmt.Errorf("%w: index table offset %d outside the region", ErrCorrupt, off)
	}
	ih := indexAt(m.mem, off)
	c := atomic.LoadUint64(&ih.capacity)
	if c == 0 || c&(c-1) != 0 || c > (size-off-indexHeaderSize)/8 {
		return table{}, fmt.Errorf("%w: index table at %d claims %d slots", ErrCorrupt, off, c)
	}
	return table{off: off, hdr: ih, slots: indexSlots(m.mem, off, c), mask: c - 1}, nil
}

// currentTable returns the table the header points at: on every lookup but
// the first after a rebuild, the table kept from before, checked with two
// loads that hit the cache. It returns a pointer: copying the table out on
// each lookup cost about as much as the lookup itself.
func (m *mapping) currentTable() (*table, error) {
	t := m.table.Load()
	if t != nil && atomic.LoadUint64(&m.hdr.index) == t.off && atomic.LoadUint64(&t.hdr.capacity) == t.mask+1 {
		return t, nil
	}
	return m.loadTable()
}

// loadTable validates the table the header points at and keeps it for the
// lookups that follow.
func (m *mapping) loadTable() (*table, error) {
	t, err := m.tableAt(atomic.LoadUint64(&m.hdr.index))
	if err != nil {
		return nil, err
	}
	m.table.Store(&t)
	return &t, nil
}

// lookup returns the offset of key's node and the value word it held when
// read. Absent keys return node 0. It is the readers' hot path: no
// allocation, no lock, no system call.
func (m *mapping) lookup(key []byte) (node, value uint64, err error) {
	t, err := m.currentTable()
	if err != nil {
		return 0, 0, err
	}
	h := Hash(key)
	tag := h >> 40
	i := h & t.mask
	for probes := uint64(0); probes <= t.mask; probes++ {
		s := atomic.LoadUint64(&t.slots[i])
		if s == slotEmpty {
			return 0, 0, nil
		}
		if s != slotTombstone && s>>40 == tag {
			off := s & nodeMask
			k, w, err := m.list.Entry(off)
			if err != nil {
				return 0, 0, err
			}
			if bytes.Equal(k, key) {
				return off, w, nil
			}
		}
		i = (i + 1) & t.mask
	}
	return 0, 0, nil
}

// newIndex allocates an empty table of capacity slots with alloc.
func (m *mapping) newIndex(capacity uint64, alloc func(uint64) (uint64, error)) (uint64, error) {
	off, err := alloc(indexHeaderSize + 8*capacity)
	if err != nil {
		return 0, err
	}
	clear(m.mem[off : off+indexHeaderSize+8*capacity])
	indexAt(m.mem, off).capacity = capacity
	return off, nil
}

// indexCapFor is the capacity a fresh table should have to hold n keys with
// room to grow before its first rebuild.
func indexCapFor(n uint64) uint64 {
	want := max(minIndexCap, 3*n)
	return 1 << bits.Len64(want-1)
}

// findSlot is the writer's lookup: it returns the slot index holding key's
// node, or -1.
func (m *mapping) findSlot(t *table, key []byte, h uint64) (int, uint64, error) {
	tag := h >> 40
	i := h & t.mask
	for probes := uint64(0); probes <= t.mask; probes++ {
		s := t.slots[i]
		if s == slotEmpty {
			return -1, 0, nil
		}
		if s != slotTombstone && s>>40 == tag {
			k, err := m.list.Key(s & nodeMask)
			if err != nil {
				return -1, 0, err
			}
			if bytes.Equal(k, key) {
				return int(i), s & nodeMask, nil
			}
		}
		i = (i + 1) & t.mask
	}
	return -1, 0, nil
}

// insertSlot stores node into the first free or tombstoned slot on h's
// probe sequence. The table must have room (see needsRebuild).
func insertSlot(t *table, h, node uint64) {
	i := h & t.mask
	for {
		s := t.slots[i]
		if s == slotEmpty || s == slotTombstone {
			if s == slotTombstone {
				t.hdr.tombstones--
			}
			t.hdr.used++
			atomic.StoreUint64(&t.slots[i], node|h>>40<<40)
			return
		}
		i = (i + 1) & t.mask
	}
}

// removeSlot turns slot i into a tombstone, so probes for other keys still
// pass over it.
func removeSlot(t *table, i int) {
	atomic.StoreUint64(&t.slots[i], slotTombstone)
	t.hdr.used--
	t.hdr.tombstones++
}

// needsRebuild reports whether adding one key would take the table past
// half full (counting tombstones, which lengthen probes as much as keys).
func needsRebuild(t *table) bool {
	return 2*(t.hdr.used+t.hdr.tombstones+1) > uint64(len(t.slots))
}

// rebuildIndex builds a new table holding every node of the current one, at
// twice the size if it is more than a quarter full of live keys, publishes
// it, and retires the old one.
func (w *Writer) rebuildIndex() error {
	m := w.m
	old, err := m.currentTable()
	if err != nil {
		return err
	}
	capacity := uint64(len(old.slots))
	if 4*(old.hdr.used+1) > capacity {
		capacity *= 2
	}
	off, err := m.newIndex(capacity, w.Alloc)
	if err != nil {
		return err
	}
	nt, err := m.tableAt(off)
	if err != nil {
		return err
	}
	for _, s := range old.slots {
		if s == slotEmpty || s == slotTombstone {
			continue
		}
		k, err := m.list.Key(s & nodeMask)
		if err != nil {
			return err
		}
		insertSlot(&nt, Hash(k), s&nodeMask)
	}
	atomic.StoreUint64(&m.hdr.index, off)
	w.retire(lowArea, old.off, indexHeaderSize+8*uint64(len(old.slots)))
	return nil
}

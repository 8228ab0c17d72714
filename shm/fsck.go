package shm

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/shmreg/shmreg/skiplist"
)

// FsckReport is what Fsck found. A region is healthy when Problems is empty.
type FsckReport struct {
	Path       string   `json:"path"`
	Generation uint64   `json:"generation"`
	Entries    int      `json:"entries"`     // live entries found in the list
	Nodes      int      `json:"nodes"`       // nodes linked at level 0 (live or not)
	IndexSlots int      `json:"index_slots"` // capacity of the index table
	Problems   []string `json:"problems"`
}

// maxProblems keeps a badly damaged region's report readable.
const maxProblems = 100

// Fsck opens the region read-only and checks every structure in it: the
// header, every level of the skiplist (bounds, order, towers), the index
// (every slot names a listed node under the right tag and is reachable by
// probing; every live node is indexed) and the header's counters, inside a
// Snapshot so that no commit is half done while it looks. It never
// panics on a damaged region: what it cannot read is reported as a problem.
func Fsck(name string, opts Options) (FsckReport, error) {
	r, err := Open(name, opts)
	if err != nil {
		return FsckReport{Path: opts.Resolve(name)}, err
	}
	defer r.Close()
	var rep FsckReport
	err = r.Snapshot(func(s *Snapshot) error {
		rep = fsck(s.m)
		return nil
	})
	return rep, err
}

func fsck(m *mapping) (rep FsckReport) {
	rep.Path = m.path
	rep.Generation = m.loadGeneration()
	add := func(format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			add("fsck stopped by a fault reading the region: %v", p)
		}
	}()
	hdr := m.hdr
	alloc := atomic.LoadUint64(&hdr.alloc)
	if alloc < headerSize || alloc > m.size() {
		add("allocation cursor %d outside the pool [%d, %d]", alloc, headerSize, m.size())
		alloc = m.size()
	}
	valueAlloc := atomic.LoadUint64(&hdr.valueAlloc)
	if valueAlloc < alloc || valueAlloc > m.size() {
		add("value cursor %d outside [%d, %d]", valueAlloc, alloc, m.size())
		valueAlloc = alloc
	}
	committing := m.loadState()&stateCommitting != 0
	// Allocated bytes lie below the bottom cursor or at or above the top
	// one (a block carved from a free block of the other end lies there
	// too); nothing lives between the cursors.
	allocated := func(off, n uint64) bool {
		return off >= headerSize && off+n <= m.size() && off+n >= off && (off+n <= alloc || off >= valueAlloc)
	}
	inPool := func(w uint64) bool { return allocated(skiplist.Unpair(w)) }
	l := &m.list

	// Level 0: every node, in order, inside the allocated pool.
	level0 := map[uint64]bool{}
	var live uint64
	var liveBytes uint64
	var prev []byte
	for off, err := l.Next(l.Head(), 0); off != 0; off, err = l.Next(off, 0) {
		if err != nil {
			add("level 0: %v", err)
			break
		}
		if level0[off] {
			add("level 0: node %d reached twice (a cycle)", off)
			break
		}
		if block, err := l.Block(off); err == nil && !allocated(off, block) {
			add("level 0: node %d (a %d-byte block) reaches between the allocation cursors %d and %d", off, block, alloc, valueAlloc)
		}
		level0[off] = true
		k, w, err := l.Entry(off)
		if err != nil {
			add("level 0: %v", err)
			break
		}
		kw, _ := l.KeyWord(off)
		if !inPool(kw) {
			add("node %d: key outside the allocated pool", off)
		}
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			add("level 0: key %q after %q is out of order", k, prev)
		}
		prev = k
		if w != 0 {
			if !inPool(w) {
				add("node %d (%q): value outside the allocated pool", off, k)
			}
			// (Mid-commit, a node being replaced already points at its
			// successor's bytes.)
			if inline, _ := l.Inline(off); inline && !committing {
				h, _ := l.Height(off)
				if vOff, _ := skiplist.Unpair(w); vOff != skiplist.InlineOffset(off, h, uint64(len(k))) {
					add("node %d (%q): its block holds its value, but its value word points at %d", off, k, vOff)
				}
			}
			_, n := skiplist.Unpair(w)
			live++
			liveBytes += uint64(len(k)) + n
		}
	}
	rep.Nodes = len(level0)
	rep.Entries = int(live)

	// Upper levels: subsets of level 0, in order, within each node's height.
	for level := 1; level < skiplist.MaxHeight; level++ {
		var prev []byte
		steps := 0
		for off, err := l.Next(l.Head(), level); off != 0; off, err = l.Next(off, level) {
			if err != nil {
				add("level %d: %v", level, err)
				break
			}
			if steps++; steps > len(level0) {
				add("level %d: longer than level 0 (a cycle or a stray node)", level)
				break
			}
			if !level0[off] {
				add("level %d: node %d is not on level 0", level, off)
				break
			}
			k, _ := l.Key(off)
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				add("level %d: key %q after %q is out of order", level, k, prev)
			}
			prev = k
		}
	}

	// The index.
	t, err := m.currentTable()
	if err != nil {
		add("index: %v", err)
		return rep
	}
	rep.IndexSlots = len(t.slots)
	if !allocated(t.off, indexHeaderSize+8*uint64(len(t.slots))) {
		add("index table at %d lies between the allocation cursors", t.off)
	}
	var used, tombs uint64
	indexed := map[uint64]bool{}
	for i, s := range t.slots {
		switch s {
		case slotEmpty:
			continue
		case slotTombstone:
			tombs++
			continue
		}
		used++
		node := s & nodeMask
		if !level0[node] {
			add("index slot %d: node %d is not in the list", i, node)
			continue
		}
		if indexed[node] {
			add("index slot %d: node %d indexed twice", i, node)
		}
		indexed[node] = true
		k, _ := l.Key(node)
		hash := Hash(k)
		if s>>40 != hash>>40 {
			add("index slot %d: tag %x does not match the hash of %q", i, s>>40, k)
		}
		// Probing from the home slot must reach slot i without an empty slot.
		for j := hash & t.mask; j != uint64(i); j = (j + 1) & t.mask {
			if t.slots[j] == slotEmpty {
				add("index slot %d: %q is unreachable (empty slot %d on its probe path)", i, k, j)
				break
			}
		}
	}
	if !committing {
		for off := range level0 {
			if w, _ := l.ValueWord(off); w != 0 && !indexed[off] {
				k, _ := l.Key(off)
				add("live key %q (node %d) is missing from the index", k, off)
			}
		}
		if used != t.hdr.used || tombs != t.hdr.tombstones {
			add("index counters say %d used, %d tombstones; found %d, %d", t.hdr.used, t.hdr.tombstones, used, tombs)
		}
		if n := atomic.LoadUint64(&hdr.entries); n != live {
			add("header counts %d entries; the list holds %d", n, live)
		}
		if n := atomic.LoadUint64(&hdr.liveBytes); n != liveBytes {
			add("header counts %d live bytes; the list holds %d", n, liveBytes)
		}
	} else {
		add("a commit is under way or its writer died (the next writer repairs the region)")
	}
	return rep
}

package shm

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/skiplist"
)

// Memory reuse, LMDB's reader-table way.
//
// A block the writer unlinks (an old value, a deleted node and its key) is
// retired with the generation G during which it was unlinked. Readers
// publish in their slot the generation at which their current read began
// (0 when idle); a reader whose epoch is greater than G loaded the generation
// after the unlink was complete, so it cannot reach the block. Once every
// live slot's epoch is greater than G the block goes on a free list of its
// size class and is handed out again.
//
// Slots that hold the oldest epoch back are handled in two ways: a slot
// whose owner died (its OFD byte lock is gone) is reaped at once; a live
// slot that has not moved for the read lease is forced: its epoch becomes
// FORCED|now, so it no longer holds anything back, and the reader, if it was
// really inside a read, reports ErrEvicted when the read ends. See the read
// protocol in docs/LAYOUT.md.
//
// The free lists live in the writer's memory, not in the region: nothing a
// crash can leave half-changed. A writer that opens a region with much
// unreachable memory compacts it instead.

const (
	// Blocks up to maxClassSize are reused; larger ones stay garbage until
	// the next compaction.
	maxClassSize = 64 << 10
	numClasses   = 48
	// reclaimEvery bounds how often the writer scans reader slots: only
	// when this many bytes wait, or an allocation would otherwise fail.
	reclaimEvery = 256 << 10
)

// sizeClass rounds n up to its class: multiples of 8 up to 64, then four
// classes per doubling (at most 25% waste). ok is false for blocks too big
// to reuse.
func sizeClass(n uint64) (size uint64, class int, ok bool) {
	if n == 0 || n > maxClassSize {
		return n, -1, false
	}
	if n <= 64 {
		size = (n + 7) &^ 7
		return size, int(size/8) - 1, true
	}
	p := uint64(bits.Len64(n - 1)) // 2^p >= n > 2^(p-1), p >= 7
	step := uint64(1) << (p - 3)   // a quarter of 2^(p-1)
	size = (n + step - 1) &^ (step - 1)
	class = 8 + int(p-7)*4 + int((size-(1<<(p-1)))/step) - 1
	return size, class, true
}

type area uint8

const (
	lowArea  area = iota // nodes and keys (grow up)
	highArea             // values (grow down)
)

type retiredBlock struct {
	off, size uint64
	gen       uint64
	where     area
}

// stuckSlot remembers since when a slot has held the same old epoch.
type stuckSlot struct {
	epoch uint64
	since time.Time
}

// reclaimer is the writer's allocator state for one mapping.
type reclaimer struct {
	retired      []retiredBlock // in retirement order, so generations ascend
	retiredBytes uint64
	free         [2][numClasses][]uint64
	stuck        map[int]stuckSlot
	barrierErr   error  // why the last pass could not run, if it could not
	reclaimAt    uint64 // retiredBytes at which the next unforced pass runs
	// firstGen is the first generation of this writer's file when this
	// writer built it (0 when it opened an existing file: it cannot tell
	// which epochs belong to older files).
	firstGen uint64
}

func newReclaimer(firstGen uint64) *reclaimer {
	return &reclaimer{stuck: map[int]stuckSlot{}, reclaimAt: reclaimEvery, firstGen: firstGen}
}

// retire records that the block at off, holding n bytes, became unreachable
// during the current commit.
func (w *Writer) retire(where area, off, n uint64) {
	h := w.m.hdr
	size, _, ok := sizeClass(n)
	h.garbageBytes += size
	if !ok {
		return
	}
	w.rec.retired = append(w.rec.retired, retiredBlock{off: off, size: size, gen: atomic.LoadUint64(&h.generation), where: where})
	w.rec.retiredBytes += size
	h.retiredBytes = w.rec.retiredBytes
}

// Alloc serves the skiplist's node allocations: from the low area's free
// list of the size class if it has a block, else from the bump cursor.
func (w *Writer) Alloc(n uint64) (uint64, error) {
	return w.allocIn(lowArea, n)
}

func (w *Writer) allocIn(where area, n uint64) (uint64, error) {
	size, class, ok := sizeClass(n)
	if ok {
		if list := w.rec.free[where][class]; len(list) > 0 {
			off := list[len(list)-1]
			w.rec.free[where][class] = list[:len(list)-1]
			h := w.m.hdr
			h.garbageBytes -= size
			h.reusableBytes -= size
			h.freeByClass[class] -= size
			return off, nil
		}
	} else {
		size = n
	}
	var off uint64
	var err error
	if where == lowArea {
		off, err = w.m.alloc(size)
	} else {
		off, err = w.m.allocValue(size)
	}
	if err == ErrFull && w.rec.retiredBytes > 0 && w.reclaim(true) {
		return w.allocIn(where, n)
	}
	if err == ErrFull && ok {
		if off, ok := w.splitLarger(where, class); ok {
			return off, nil
		}
	}
	return off, err
}

// splitLarger serves a block of class from a free block of a larger class,
// when the cursors have met and the class's own list is empty: without it,
// a region whose free bytes sit in other classes would be rebuilt although
// it has room. It looks in the requesting end's lists first, then in the
// other end's: since version 2 most bytes are nodes with their values
// inline (the bottom end), and the blocks freed at the top (large values)
// must be able to serve them. The rest of the larger block goes back to the
// list it came from as class-sized pieces (every multiple of 8 up to 64 is
// a class, so a remainder always splits exactly).
func (w *Writer) splitLarger(where area, class int) (uint64, bool) {
	if off, ok := w.splitFrom(where, class); ok {
		return off, true
	}
	return w.splitFrom(1-where, class)
}

func (w *Writer) splitFrom(from area, class int) (uint64, bool) {
	want := classSize(class)
	for c := class; c < numClasses; c++ {
		list := w.rec.free[from][c]
		if len(list) == 0 {
			continue
		}
		off := list[len(list)-1]
		w.rec.free[from][c] = list[:len(list)-1]
		size := classSize(c)
		h := w.m.hdr
		h.garbageBytes -= size
		h.reusableBytes -= size
		h.freeByClass[c] -= size
		for rest, at := size-want, off+want; rest > 0; {
			pc := largestClassWithin(rest)
			ps := classSize(pc)
			w.rec.free[from][pc] = append(w.rec.free[from][pc], at)
			h.garbageBytes += ps
			h.reusableBytes += ps
			h.freeByClass[pc] += ps
			at += ps
			rest -= ps
		}
		return off, true
	}
	return 0, false
}

// largestClassWithin is the largest class whose blocks fit in n bytes (n a
// positive multiple of 8).
func largestClassWithin(n uint64) int {
	_, c, ok := sizeClass(n)
	if !ok {
		return numClasses - 1
	}
	if classSize(c) > n {
		c--
	}
	return c
}

// storeValue copies value into a reused or fresh block of the value area.
func (w *Writer) storeValue(value []byte) (uint64, error) {
	off, err := w.allocIn(highArea, uint64(len(value)))
	if err != nil {
		return 0, err
	}
	copy(w.m.mem[off:], value)
	return skiplist.Pair(off, uint64(len(value))), nil
}

// maybeReclaim runs a reclamation pass when enough memory waits: another
// reclaimEvery bytes since the last pass, so that a reader holding memory
// back does not make every commit scan the slots.
func (w *Writer) maybeReclaim() {
	if w.rec.retiredBytes >= w.rec.reclaimAt {
		w.reclaim(false)
	}
}

// reclaim moves every retired block no reader can still reach to the free
// lists, and reports whether it freed anything.
func (w *Writer) reclaim(urgent bool) bool {
	// The barrier orders this writer's unlinks and generation bumps against
	// the readers' plain epoch stores (membarrier.go). Without it nothing
	// can be proven unreachable, so nothing is reused; compaction still
	// reclaims everything when the region fills.
	w.rec.reclaimAt = w.rec.retiredBytes + reclaimEvery
	if err := writerBarrier(); err != nil {
		w.rec.barrierErr = err
		return false
	}
	w.rec.barrierErr = nil
	oldest := w.oldestEpoch(urgent)
	h := w.m.hdr
	atomic.StoreUint64(&h.oldestEpoch, oldest)
	n := 0
	for _, b := range w.rec.retired {
		if b.gen >= oldest {
			break
		}
		_, class, _ := sizeClass(b.size)
		w.rec.free[b.where][class] = append(w.rec.free[b.where][class], b.off)
		w.rec.retiredBytes -= b.size
		h.reusableBytes += b.size
		h.freeByClass[class] += b.size
		n++
	}
	w.rec.retired = append(w.rec.retired[:0], w.rec.retired[n:]...)
	h.retiredBytes = w.rec.retiredBytes
	w.rec.reclaimAt = w.rec.retiredBytes + reclaimEvery
	return n > 0
}

// oldestEpoch returns the lowest epoch any live reader holds (or the
// current generation + 1 if none holds one), reaping dead readers' slots and
// forcing slots stuck past the lease on the way. urgent (the region is full)
// forces stuck slots without waiting for the lease to run out twice.
//
// Slots that hold nothing back:
//   - idle (epoch 0), or free (owner 0);
//   - forced (FORCED set): the read outlived its lease and will discard what
//     it read (ErrEvicted), so it may see reused memory;
//   - reading an older file (epoch below this file's first generation):
//     the writer never writes an older file, so nothing it reads is reused;
//   - owned by a dead process (its OFD byte lock is gone). Such a slot is
//     reaped by clearing its owner token with a compare-and-swap, which fails
//     if a new reader claimed it meanwhile; its epoch is left for the new
//     owner, whose reads begin after this pass's barrier anyway.
func (w *Writer) oldestEpoch(urgent bool) uint64 {
	c := w.ctl
	h := w.m.hdr
	gen := atomic.LoadUint64(&h.generation)
	oldest := gen + 1
	var need uint64 // the generation the oldest retired block needs passed
	if len(w.rec.retired) > 0 {
		need = w.rec.retired[0].gen
	}
	now := time.Now()
	for i := 0; i < c.slots; i++ {
		s := c.slot(i)
		owner := atomic.LoadUint64(&s.owner)
		e := atomic.LoadUint64(&s.epoch)
		if owner == 0 || e == 0 || e < w.rec.firstGen {
			delete(w.rec.stuck, i)
			continue
		}
		if e&epochForced != 0 {
			delete(w.rec.stuck, i)
			w.reapIfDead(i, owner)
			continue
		}
		if e > need {
			delete(w.rec.stuck, i)
			oldest = min(oldest, e)
			continue
		}
		// This slot holds the oldest retired block back.
		if w.reapIfDead(i, owner) {
			delete(w.rec.stuck, i)
			continue
		}
		st, seen := w.rec.stuck[i]
		if !seen || st.epoch != e {
			w.rec.stuck[i] = stuckSlot{epoch: e, since: now}
			st = w.rec.stuck[i]
		}
		lease := w.opts.ReadLease
		if urgent {
			lease /= 2
		}
		if now.Sub(st.since) >= lease && atomic.CompareAndSwapUint64(&s.epoch, e, epochForced|e) {
			atomic.AddUint64(&c.hdr.slotsForced, 1)
			delete(w.rec.stuck, i)
			continue
		}
		oldest = min(oldest, e)
	}
	return oldest
}

// reapIfDead reports whether slot i's owner (whose token was owner) is
// dead, and if so frees the slot.
func (w *Writer) reapIfDead(i int, owner uint64) bool {
	c := w.ctl
	if c.slotOwnerAlive(i) {
		return false
	}
	if atomic.CompareAndSwapUint64(&c.slot(i).owner, owner, 0) {
		atomic.AddUint64(&c.hdr.slotsReaped, 1)
	}
	return true
}

// classSize is the block size of a class.
func classSize(class int) uint64 {
	if class < 8 {
		return uint64(class+1) * 8
	}
	k := class - 8 // 0.. : four classes per doubling above 64
	p := uint64(k/4) + 7
	step := uint64(1) << (p - 3)
	return (1 << (p - 1)) + uint64(k%4+1)*step
}

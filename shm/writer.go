package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmreg/shmreg/skiplist"
)

// Writer is the one process that changes a region. It is safe for use by
// many goroutines; their calls are serialized. A second Writer on the same
// region, in any process, is refused with ErrWriterBusy for as long as the
// first is open.
//
// Each Put, Delete or Commit is one commit: its changes are written so that
// lock-free readers always see a valid region (docs/LAYOUT.md gives the
// publication order), then the generation is bumped and waiting readers are
// woken once. Readers may observe the entries of a multi-key commit one at a
// time; a reader that needs a consistent view of many keys takes a Snapshot.
type Writer struct {
	mu     sync.Mutex
	path   string
	opts   Options
	ctl    *control
	m      *mapping
	list   *skiplist.Writer
	lock   *regionLock
	rec    *reclaimer
	inTx   bool
	closed bool
	// hugeFallback says why the current file is not on Options.HugeTLBDir.
	hugeFallback string
	// pending are old hugetlbfs files to remove once their time comes.
	pending []pendingRemoval
}

// OpenWriter opens the region called name for writing, creating it if it
// does not exist. If the last writer died in the middle of a commit, the
// region is rebuilt from its live entries before OpenWriter returns; readers
// keep reading the old file until the new one is published.
func OpenWriter(name string, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	path := opts.Resolve(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fileError(filepath.Dir(path), err)
	}
	if _, err := hugeCapable(filepath.Dir(path)); err != nil {
		return nil, err // hugetlbfs
	}
	if d := opts.HugeTLBDir; d != "" {
		// The link the region's path becomes names it: relative, it would
		// be read from the path's directory, not this process's.
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("shm: HugeTLBDir: %w", err)
		}
		opts.HugeTLBDir, d = abs, abs
		var fs unix.Statfs_t
		if err := unix.Statfs(d, &fs); err != nil {
			return nil, fmt.Errorf("shm: HugeTLBDir: %w", fileError(d, err))
		}
		if uint32(fs.Type) != hugetlbfsMagic {
			return nil, fmt.Errorf("%w: HugeTLBDir %s", ErrNotHugetlbfs, d)
		}
	}
	ctl, err := openControl(ctlPath(path), true, opts.Slots, ctlPerm(opts.Perm))
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(ctl.file.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		ctl.close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is open for writing by another process", ErrWriterBusy, path)
		}
		return nil, fmt.Errorf("shm: lock %s: %w", ctl.file.Name(), err)
	}
	w := &Writer{path: path, opts: opts, ctl: ctl}
	if w.lock, err = newRegionLock(ctl, opts.LockTimeout); err != nil {
		ctl.close()
		return nil, err
	}
	if err := finishReplace(path); err != nil {
		ctl.close()
		return nil, err
	}
	m, err := openMapping(path, true)
	if errors.Is(err, ErrNoRegion) {
		m, err = w.createMapping(opts.Size, minIndexCap)
		if err == nil {
			err = m.publish(path)
		}
	}
	if err != nil {
		ctl.close()
		return nil, err
	}
	adoptHugeTLB(w, m, path)
	if err := w.use(m, 0); err != nil {
		m.unmap()
		ctl.close()
		return nil, err
	}
	h := m.hdr
	unreachable := atomic.LoadUint64(&h.garbageBytes)
	if opts.HugeTLBDir != "" {
		w.cleanHugeTLB(opts.HugeTLBDir, m.dataPath)
	}
	moveToHuge := opts.HugeTLBDir != "" && m.dataPath == ""
	if moveToHuge {
		// Not a rebuild (which every reader must follow) on every start
		// while the pool is short: only when it has room for the file.
		if why := hugeTLBRoom(opts.HugeTLBDir, int64(m.size())); why != "" {
			moveToHuge, w.hugeFallback = false, why
		}
	}
	if m.loadState()&(stateCommitting|stateSuperseded) != 0 || h.version < LayoutVersion || moveToHuge ||
		(unreachable > 1<<20 && unreachable > atomic.LoadUint64(&h.liveBytes)/2) {
		// A version-1 region is rebuilt as version 2 (its values move
		// beside their nodes); a region asked to live on hugetlbfs moves
		// there. The last writer died mid-commit: the list is valid at level 0 (every
		// link is one atomic store of a complete node) but counters and the
		// index may be behind. Rebuild from the list. The same rebuild
		// recovers memory that the last writer's free lists (which live in
		// its process, not the region) held.
		if err := w.compact(0); err != nil {
			w.closeFiles()
			return nil, fmt.Errorf("shm: repair %s after a writer died mid-commit: %w", path, err)
		}
	}
	w.m.hdr.writerPid = uint64(os.Getpid())
	return w, nil
}

func ctlPerm(p os.FileMode) os.FileMode { return p | (p&0o444)>>1 }

// use makes m the writer's current mapping.
func (w *Writer) use(m *mapping, firstGen uint64) error {
	l, err := skiplist.NewWriter(m.mem, headerSize, m.hdr.head, w, uint64(time.Now().UnixNano()))
	if err != nil {
		return err
	}
	w.m, w.list, w.rec = m, l, newReclaimer(firstGen)
	// The free lists are this writer's own: whatever a previous writer
	// counted as retired or reusable is plain garbage now (a rebuild
	// recovers it).
	h := m.hdr
	h.retiredBytes, h.reusableBytes = 0, 0
	clear(h.freeByClass[:])
	return nil
}

// Alloc lets the skiplist allocate from a mapping being built (compaction).
func (m *mapping) Alloc(size uint64) (uint64, error) { return m.alloc(size) }

// Path returns the data file's path.
func (w *Writer) Path() string { return w.path }

// Put sets key to value in one commit.
func (w *Writer) Put(key, value []byte) error {
	if err := checkEntry(key, value); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.begin(); err != nil {
		return err
	}
	err := w.put(key, value)
	return w.end(err)
}

// Delete removes key in one commit. It reports whether the key was present.
func (w *Writer) Delete(key []byte) (bool, error) {
	if err := checkEntry(key, nil); err != nil {
		return false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.begin(); err != nil {
		return false, err
	}
	ok, err := w.delete(key)
	return ok, w.end(err)
}

// Batch collects changes applied by Commit as one commit with one wake-up.
// It keeps references to the slices given to it until Commit returns.
type Batch struct {
	ops      []batchOp
	place    bool
	center   string
	revision uint64
}

type batchOp struct {
	key, value []byte
	delete     bool
}

// Put adds a put of key to the batch.
func (b *Batch) Put(key, value []byte) { b.ops = append(b.ops, batchOp{key: key, value: value}) }

// Delete adds a delete of key to the batch.
func (b *Batch) Delete(key []byte) { b.ops = append(b.ops, batchOp{key: key, delete: true}) }

// SetPlace records, in the same commit, where the region's content came
// from: the center the agent follows and the revision it has applied.
func (b *Batch) SetPlace(center string, revision uint64) {
	b.place, b.center, b.revision = true, center, revision
}

// Len returns the number of changes in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch for reuse.
func (b *Batch) Reset() { *b = Batch{ops: b.ops[:0]} }

// Commit applies every change in b, in order, as one commit. Entries are
// validated first, so an invalid entry rejects the batch before anything is
// written. A Snapshot sees the batch whole or not at all; a writer killed in
// the middle of a batch may leave a prefix of it applied (each change is
// whole), and the place set by SetPlace is recorded only with the last
// change, so an agent that replays from its place converges.
func (w *Writer) Commit(b *Batch) error {
	for _, op := range b.ops {
		if err := checkEntry(op.key, op.value); err != nil {
			return err
		}
	}
	if len(b.center) > placeCenterLen {
		return fmt.Errorf("shm: center id %q longer than %d bytes", b.center, placeCenterLen)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.begin(); err != nil {
		return err
	}
	var err error
	for _, op := range b.ops {
		if op.delete {
			_, err = w.delete(op.key)
		} else {
			err = w.put(op.key, op.value)
		}
		if err != nil {
			break
		}
	}
	if err == nil && b.place {
		h := w.m.hdr
		clear(h.placeCenter[:])
		copy(h.placeCenter[:], b.center)
		h.placeRevision = b.revision
	}
	return w.end(err)
}

// Place returns the center and revision recorded by the last SetPlace.
func (w *Writer) Place() (center string, revision uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return "", 0
	}
	return placeOf(w.m.hdr)
}

func placeOf(h *dataHeader) (string, uint64) {
	c := h.placeCenter[:]
	for i, b := range c {
		if b == 0 {
			c = c[:i]
			break
		}
	}
	return string(c), atomic.LoadUint64(&h.placeRevision)
}

func checkEntry(key, value []byte) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes (limit 1..%d)", ErrKeyTooLarge, len(key), MaxKeyLen)
	}
	if len(value) > MaxValueLen {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrValueTooLarge, len(value), MaxValueLen)
	}
	return nil
}

// begin starts a commit: take the region lock's write side (so snapshot
// readers see commits whole) and mark the region as mid-commit.
func (w *Writer) begin() error {
	if w.closed {
		return ErrClosed
	}
	if err := w.lock.lock(); err != nil {
		return err
	}
	w.inTx = true
	atomic.StoreUint64(&w.m.hdr.state, w.m.loadState()|stateCommitting)
	w.maybeReclaim()
	w.removeDue(false)
	return nil
}

// end finishes a commit whatever happened in it: what was applied stays
// applied (each change is complete on its own), the generation moves on and
// readers are woken.
func (w *Writer) end(err error) error {
	h := w.m.hdr
	atomic.AddUint64(&h.generation, 1)
	atomic.StoreUint64(&h.state, w.m.loadState()&^stateCommitting)
	w.inTx = false
	if uerr := w.lock.unlock(); err == nil {
		err = uerr
	}
	w.ctl.notify()
	return err
}

// put applies one put, growing the region once if it is full.
func (w *Writer) put(key, value []byte) error {
	err := w.tryPut(key, value)
	if errors.Is(err, ErrFull) {
		need := skiplist.NodeSize(skiplist.MaxHeight) + uint64(len(key)+len(value)) + 64
		if err := w.compact(need); err != nil {
			return err
		}
		err = w.tryPut(key, value)
	}
	return err
}

func (w *Writer) tryPut(key, value []byte) error {
	m := w.m
	h := m.hdr
	t, err := m.currentTable()
	if err != nil {
		return err
	}
	hash := Hash(key)
	slot, node, err := m.findSlot(t, key, hash)
	if err != nil {
		return err
	}
	inline := w.opts.inline(len(value))
	if node != 0 {
		return w.update(t, slot, node, key, value, inline)
	}
	if needsRebuild(t) {
		if err := w.rebuildIndex(); err != nil {
			return err
		}
		if t, err = m.currentTable(); err != nil {
			return err
		}
	}
	var off, v uint64
	if inline {
		off, v, err = w.list.NewEntry(key, value)
	} else if v, err = w.storeValue(value); err == nil {
		off, err = w.list.NewNode(key)
	}
	if err != nil {
		return err
	}
	existing, err := w.list.Link(off)
	if errors.Is(err, skiplist.ErrExists) {
		// A node for key is linked but not indexed: a writer died between
		// linking and indexing it (OpenWriter rebuilds such a region, so
		// this is a second line of defence). Put ours in its place; its
		// block stays garbage until the next rebuild.
		if block, berr := m.list.Block(off); berr == nil {
			w.retire(lowArea, off, block)
		}
		if off, err = w.list.Replace(existing, value, inline, v); err != nil {
			return err
		}
		insertSlot(t, hash, off)
	} else if err != nil {
		return err
	} else {
		insertSlot(t, hash, off)
		if err := w.list.SetValue(off, v); err != nil {
			return err
		}
	}
	h.entries++
	h.liveBytes += uint64(len(key) + len(value))
	return nil
}

// testHookReplaced, when a test sets it, runs in update between the list
// taking a replacing node and the index taking it.
var testHookReplaced func(key []byte)

// update gives the key whose node sits in index slot i a new value. A value
// stored apart that stays apart is swapped in one store of the value word;
// otherwise a new node with the value inline takes the old one's place in
// the index (one store: the moment lookups see the new value) and then in
// the list, and the old block is retired whole.
func (w *Writer) update(t *table, i int, node uint64, key, value []byte, inline bool) error {
	m := w.m
	old, err := m.list.ValueWord(node)
	if err != nil {
		return err
	}
	wasInline, err := m.list.Inline(node)
	if err != nil {
		return err
	}
	block, err := m.list.Block(node)
	if err != nil {
		return err
	}
	oldOff, oldLen := skiplist.Unpair(old)
	var v uint64
	if !inline {
		if v, err = w.storeValue(value); err != nil {
			return err
		}
	}
	if !wasInline && !inline {
		if err := w.list.SetValue(node, v); err != nil {
			return err
		}
	} else {
		nn, err := w.list.Replace(node, value, inline, v)
		if err != nil {
			return err
		}
		if testHookReplaced != nil {
			testHookReplaced(key)
		}
		atomic.StoreUint64(&t.slots[i], nn|Hash(key)>>40<<40)
		w.retire(lowArea, node, block)
	}
	if !wasInline && old != 0 {
		w.retire(highArea, oldOff, oldLen)
	}
	m.hdr.liveBytes = m.hdr.liveBytes + uint64(len(value)) - oldLen
	return nil
}

func (w *Writer) delete(key []byte) (bool, error) {
	m := w.m
	h := m.hdr
	t, err := m.currentTable()
	if err != nil {
		return false, err
	}
	i, node, err := m.findSlot(t, key, Hash(key))
	if err != nil || node == 0 {
		return false, err
	}
	old, err := m.list.ValueWord(node)
	if err != nil {
		return false, err
	}
	inline, err := m.list.Inline(node)
	if err != nil {
		return false, err
	}
	block, err := m.list.Block(node)
	if err != nil {
		return false, err
	}
	if err := w.list.SetValue(node, 0); err != nil {
		return false, err
	}
	removeSlot(t, i)
	if err := w.list.Unlink(node); err != nil {
		return true, err
	}
	oldOff, oldLen := skiplist.Unpair(old)
	h.entries--
	h.liveBytes -= uint64(len(key)) + oldLen
	if !inline && old != 0 {
		w.retire(highArea, oldOff, oldLen)
	}
	w.retire(lowArea, node, block)
	return true, nil
}

// Compact rebuilds the region into a new file holding only its live entries
// (at the same size, or larger if they need it) and publishes it; readers
// move to it at their next operation.
func (w *Writer) Compact() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.lock.lock(); err != nil {
		return err
	}
	err := w.compact(0)
	if uerr := w.lock.unlock(); err == nil {
		err = uerr
	}
	w.ctl.notify()
	return err
}

// compact builds a new file from the live entries of the current one, with
// at least extra bytes free, publishes it over the path and marks the old
// file superseded.
func (w *Writer) compact(extra uint64) error {
	old := w.m
	entries := atomic.LoadUint64(&old.hdr.entries)
	live := atomic.LoadUint64(&old.hdr.liveBytes)
	indexCap := indexCapFor(entries)
	// Room for the live data as it was laid out (nodes average 1.33 levels),
	// twice over so the region does not immediately fill again.
	estimate := uint64(minRegionSize(indexCap)) + entries*(skiplist.NodeSize(2)+8) + live
	size := max(old.size(), uint64(w.opts.Size))
	for size < 2*estimate+extra {
		size *= 2
	}
	nm, err := w.createMapping(int64(size), indexCap)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		nm.remove()
		_ = nm.unmap()
		return err
	}
	nl, err := skiplist.NewWriter(nm.mem, headerSize, nm.hdr.head, nm, uint64(time.Now().UnixNano()))
	if err != nil {
		return fail(err)
	}
	t, err := nm.currentTable()
	if err != nil {
		return fail(err)
	}
	app := skiplist.NewAppender(nl)
	var n, bytes uint64
	it := old.list.Seek(nil)
	for ; it.Valid(); it.Next() {
		var off uint64
		if w.opts.inline(len(it.Value())) {
			off, err = app.AppendEntry(it.Key(), it.Value())
		} else if v, verr := nm.storeValue(it.Value()); verr != nil {
			err = verr
		} else {
			off, err = app.Append(it.Key(), v)
		}
		if err != nil {
			return fail(err)
		}
		insertSlot(t, Hash(it.Key()), off)
		n++
		bytes += uint64(len(it.Key()) + len(it.Value()))
	}
	if err := it.Err(); err != nil {
		return fail(fmt.Errorf("read live entries of %s: %w", old.path, err))
	}
	h, oh := nm.hdr, old.hdr
	h.entries, h.liveBytes = n, bytes
	h.generation = atomic.LoadUint64(&oh.generation) + 1
	h.compactions = oh.compactions + 1
	h.placeCenter, h.placeRevision = oh.placeCenter, oh.placeRevision
	h.writerPid = uint64(os.Getpid())
	if w.inTx {
		h.state = stateCommitting
	}
	if err := replace(old, nm, w.path); err != nil {
		_ = nm.unmap()
		return err
	}
	if old.dataPath != "" {
		// The old hugetlbfs file goes once no reader can be between
		// reading the old link and opening its target (its pages return
		// to the pool when the last reader unmaps it).
		w.removeLater(old.dataPath, time.Now())
	}
	if err := w.use(nm, atomic.LoadUint64(&nm.hdr.generation)); err != nil {
		return err
	}
	return old.unmap()
}

// Close releases the region. The files stay: readers keep reading, and the
// next writer carries on from them.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	return w.closeFiles()
}

func (w *Writer) closeFiles() error {
	w.removeDue(true)
	err := w.m.unmap()
	if cerr := w.ctl.close(); err == nil {
		err = cerr
	}
	return err
}

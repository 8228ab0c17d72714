package shm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/skiplist"
)

// Reader reads a region straight from shared memory: no socket, no system
// call and no lock on the lookup path. It maps the data file read-only, so
// nothing it does can damage the region. A Reader is safe for concurrent
// use by many goroutines.
//
// Every read announces itself in a reader slot of the control file (its
// epoch) for as long as it runs, so that the writer never reuses memory the
// read may still see. If the region is rebuilt into a new file (it grew, was
// compacted, or was repaired after a writer crash) the Reader moves to the
// new file at its next operation without returning an error.
type Reader struct {
	path        string
	lease       time.Duration
	lockTimeout time.Duration
	ctl         *control
	cur         atomic.Pointer[mapping]

	handles sync.Pool // *readHandle, each owning one reader slot

	mu       sync.Mutex // guards the fields below
	curFirst uint64     // cur's generation when this Reader mapped it
	mine     map[int]bool
	retired  []retiredMapping
	sweeper  *time.Timer
	closed   bool
	claimErr error
	nonce    uint32

	// plainEpoch: this process is registered for expedited membarrier, so
	// reads publish their epoch with plain stores (see begin).
	plainEpoch bool

	// detached: the reader was closed while reads were under way, and the
	// read lease passed; its files are no longer mapped (see Close). A read
	// that ends after this saw zeros, not the region.
	detached atomic.Bool
}

// readHandle is one claimed reader slot. Handles live in a sync.Pool, so a
// goroutine usually gets back the slot its processor used last, and no two
// concurrent reads share a slot.
type readHandle struct {
	i    int
	slot *readerSlot
}

// retiredMapping is a superseded file still mapped because a read may be on
// it. It is unmapped after the read lease: reads do not publish which mapping
// they use (that would cost a fenced store on every read), and no read may
// legitimately run longer than the lease.
type retiredMapping struct {
	m     *mapping
	first uint64 // the generation when this Reader mapped it: its reads' epochs are >= first
	until time.Time
}

// Open opens the region called name for reading. The region must exist
// (a writer creates it).
func Open(name string, opts Options) (*Reader, error) {
	opts = opts.withDefaults()
	path := opts.Resolve(name)
	ctl, err := openControl(ctlPath(path), false, 0, 0)
	if errors.Is(err, ErrNoRegion) && exists(path) {
		return nil, &IncompleteError{Path: path, Missing: ctlPath(path), Control: true}
	}
	if err != nil {
		return nil, err
	}
	m, err := openMapping(path, false)
	if errors.Is(err, ErrNoRegion) {
		err = &IncompleteError{Path: path, Missing: path}
	}
	if err != nil {
		ctl.close()
		return nil, err
	}
	r := &Reader{path: path, lease: opts.ReadLease, lockTimeout: opts.LockTimeout, ctl: ctl, mine: map[int]bool{},
		plainEpoch: readerRegistration()}
	r.cur.Store(m)
	r.curFirst = m.loadGeneration()
	r.handles.New = func() any { return r.newHandle() }
	return r, nil
}

// Path returns the data file's path.
func (r *Reader) Path() string { return r.path }

// exists reports whether a file is at path (an error other than "does not
// exist", a permission say, counts as there: the open said what it was).
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

func (r *Reader) newHandle() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.claimErr = ErrClosed
		return nil
	}
	r.nonce++
	i, err := r.ctl.claimSlot(r.nonce, r.mine)
	// Handles the pool dropped give their slots back only when the garbage
	// collector finds them and their cleanups run; under GC pressure, on a
	// loaded machine, or under the race detector (whose pool drops items on
	// purpose) that can lag behind. Collect, give the cleanups time (1 ms,
	// then doubling, about 0.25 s in all), and try again.
	for wait := time.Millisecond; errors.Is(err, ErrNoSlots) && len(r.mine) > 0 && wait <= 128*time.Millisecond; wait *= 2 {
		r.mu.Unlock()
		runtime.GC()
		runtime.GC()
		time.Sleep(wait)
		r.mu.Lock()
		if r.closed {
			r.claimErr = ErrClosed
			return nil
		}
		i, err = r.ctl.claimSlot(r.nonce, r.mine)
	}
	if err != nil {
		r.claimErr = err
		return nil
	}
	r.mine[i] = true
	h := &readHandle{i: i, slot: r.ctl.slot(i)}
	// A handle the pool drops at a garbage collection gives its slot back.
	runtime.AddCleanup(h, r.releaseSlot, i)
	return h
}

func (r *Reader) releaseSlot(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || !r.mine[i] {
		return
	}
	delete(r.mine, i)
	r.ctl.releaseSlot(i)
}

// begin starts a read and pins the current mapping's memory against reuse.
//
// It publishes the generation it loaded in its slot and loads the generation
// again, repeating until the two agree; end sets the slot back to 0 (idle),
// so an idle reader never holds memory reuse back. In a process registered
// for expedited membarrier (see membarrier.go) both stores are plain stores
// to the reader's own cache line: the read path executes no fenced
// instruction and writes no shared line, so reader processes scale. Without
// the registration the epoch is published with a sequentially consistent
// store. See docs/LAYOUT.md (reader slots) for the writer's side.
func (r *Reader) begin() (*readHandle, *mapping, error) {
	h, err := r.handle()
	if err != nil {
		return nil, nil, err
	}
	m, err := r.enter(h)
	if err != nil {
		r.handles.Put(h)
		return nil, nil, err
	}
	return h, m, nil
}

// handle takes a handle from the pool, or says why none could be made.
func (r *Reader) handle() (*readHandle, error) {
	if h, _ := r.handles.Get().(*readHandle); h != nil {
		return h, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return nil, r.claimErr
}

// enter publishes h's epoch for a read of the current mapping and returns
// the mapping. The common case, a process registered for membarrier on a
// file that is still current, is two loads and a plain store.
func (r *Reader) enter(h *readHandle) (*mapping, error) {
	m := r.cur.Load()
	if m != nil && r.plainEpoch && m.loadState()&stateSuperseded == 0 {
		g := m.loadGeneration()
		h.slot.epoch = g
		if m.loadGeneration() == g {
			return m, nil
		}
	}
	return r.enterSlow(h)
}

// enterSlow is enter's every other case: a closed reader, a superseded
// file (it moves to the region's new file first), no membarrier
// registration, or a commit racing the epoch store.
func (r *Reader) enterSlow(h *readHandle) (*mapping, error) {
	for tries := 0; ; tries++ {
		m := r.cur.Load()
		if m == nil {
			return nil, ErrClosed
		}
		if m.loadState()&stateSuperseded != 0 && tries < 8 {
			// A failed reopen keeps us on the superseded file, which is
			// still a whole, readable region, only no longer updated.
			if err := r.reopen(m); err == nil {
				continue
			}
		}
		g := m.loadGeneration()
		for {
			if r.plainEpoch {
				h.slot.epoch = g
			} else {
				atomic.StoreUint64(&h.slot.epoch, g)
			}
			again := m.loadGeneration()
			if again == g {
				break
			}
			g = again
		}
		return m, nil
	}
}

// end finishes a read and marks the slot idle. If the writer forced the
// slot free meanwhile (the read outlived the lease), what the read saw may
// have been reused: it reports ErrEvicted, and the caller discards the
// result.
func (r *Reader) end(h *readHandle) error {
	old := idleSlot(&h.slot.epoch)
	r.handles.Put(h)
	return r.ended(old)
}

// ended is the outcome of a read whose slot held old when the read idled
// it: nil, or the error of a read that ended after its slot was forced free
// (ErrEvicted) or after its Reader was closed and released its files
// (ErrClosed). Either way what the read saw may not be the region's.
func (r *Reader) ended(old uint64) error {
	switch {
	case r.detached.Load():
		return fmt.Errorf("%w: the read outlived the reader (%s)", ErrClosed, r.path)
	case old&epochForced != 0:
		return fmt.Errorf("%w (%s)", ErrEvicted, r.path)
	}
	return nil
}

// reopen switches from the superseded mapping old to the file now at the
// path.
func (r *Reader) reopen(old *mapping) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.cur.Load() != old {
		return nil
	}
	nm, err := openMapping(r.path, false)
	if err != nil {
		return err
	}
	first := nm.loadGeneration() // before any read can begin on nm
	r.cur.Store(nm)
	r.retired = append(r.retired, retiredMapping{m: old, first: r.curFirst, until: time.Now().Add(r.lease)})
	r.curFirst = first
	r.sweepLocked()
	return nil
}

// sweepLocked unmaps retired mappings whose grace period has passed and
// that no read of this Reader may still be using, and schedules itself
// again while some remain. A read on a retired file holds an epoch between
// the generation at which this Reader mapped the file and the file's last
// generation; a new file's generations continue past its predecessor's,
// so these ranges do not overlap. Such a read keeps the mapping for
// another lease: a View callback running past the lease may still touch
// its value, and an unmapped value would crash the process.
func (r *Reader) sweepLocked() {
	now := time.Now()
	kept := r.retired[:0]
	for _, rm := range r.retired {
		switch {
		case now.Before(rm.until):
			kept = append(kept, rm)
		case r.readingLocked(rm.first, rm.m.loadGeneration()):
			rm.until = now.Add(r.lease)
			kept = append(kept, rm)
		default:
			_ = rm.m.unmap()
		}
	}
	r.retired = kept
	if len(r.retired) > 0 && r.sweeper == nil {
		next := r.retired[0].until
		for _, rm := range r.retired {
			if rm.until.Before(next) {
				next = rm.until
			}
		}
		r.sweeper = time.AfterFunc(next.Sub(now)+time.Millisecond, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.sweeper = nil
			if !r.closed {
				r.sweepLocked()
			}
		})
	}
}

// readingLocked reports whether one of this Reader's slots is in a read
// that began between generations first and last: a read of the file those
// were the generations of. A forced slot keeps its read's epoch beside the
// forced bit, so a stuck read pins only its own file.
func (r *Reader) readingLocked(first, last uint64) bool {
	for i := range r.mine {
		e := atomic.LoadUint64(&r.ctl.slot(i).epoch) &^ epochForced
		if e != 0 && first <= e && e <= last {
			return true
		}
	}
	return false
}

// Get returns a copy of key's value, or ErrNotFound. On a hit it allocates
// only the returned slice.
func (r *Reader) Get(key []byte) (value []byte, err error) {
	h, m, err := r.begin()
	if err != nil {
		return nil, err
	}
	v, err := find(m, key)
	if err == nil {
		value = append(make([]byte, 0, len(v)), v...)
	}
	if eerr := r.end(h); eerr != nil {
		return nil, eerr
	}
	return value, err
}

// View calls fn with key's value as it lies in shared memory, without
// copying it. The slice is valid only until fn returns: it must not be
// retained, and fn must not modify it (the mapping is read-only; a write
// faults). If the key is absent View returns ErrNotFound without calling fn.
// View allocates nothing. A goroutine that makes many lookups reads faster
// through a Session of its own.
//
// If fn panics, the panic is the caller's, and the read's slot stays out of
// the pool: it keeps the read's epoch until the writer forces it after the
// read lease (memory reuse waits that long once), and it is released when
// the garbage collector finds its handle. Ending the read in a deferred
// call instead would cost every lookup, as it did Session.View.
func (r *Reader) View(key []byte, fn func(value []byte) error) error {
	h, m, err := r.begin()
	if err != nil {
		return err
	}
	v, err := find(m, key)
	if err == nil {
		err = fn(v)
	}
	if eerr := r.end(h); eerr != nil {
		err = eerr
	}
	return err
}

// find looks key up in m. A corrupt region, or a file truncated under us
// (SIGBUS), becomes ErrCorrupt rather than a crash.
func find(m *mapping, key []byte) (v []byte, err error) {
	defer recoverFault(m, &err, debug.SetPanicOnFault(true))
	node, w, err := m.lookup(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.path, err)
	}
	if node == 0 || w == 0 {
		return nil, ErrNotFound
	}
	return m.list.Bytes(w)
}

// Scan calls fn for every live entry whose key starts with prefix, in key
// order, until fn returns false. The slices are valid only inside fn, as
// with View. Entries committed during the scan may or may not be seen; use
// Snapshot for a consistent view of many keys.
func (r *Reader) Scan(prefix []byte, fn func(key, value []byte) bool) (err error) {
	h, m, err := r.begin()
	if err != nil {
		return err
	}
	defer func() {
		if eerr := r.end(h); eerr != nil {
			err = eerr
		}
	}()
	return scan(m, prefix, fn)
}

func scan(m *mapping, prefix []byte, fn func(key, value []byte) bool) error {
	it, err := seek(m, prefix)
	for err == nil && it.Valid() && bytes.HasPrefix(it.Key(), prefix) {
		if !fn(it.Key(), it.Value()) {
			return nil
		}
		err = next(m, &it)
	}
	if err != nil {
		return err
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	return nil
}

// recoverFault, deferred by the guarded steps, turns a fault or an
// out-of-bounds access on a damaged mapping into ErrCorrupt, and restores
// the goroutine's panic-on-fault setting to old. One deferred call, because
// the guard sits on every lookup.
func recoverFault(m *mapping, err *error, old bool) {
	debug.SetPanicOnFault(old)
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %s: %v", ErrCorrupt, m.path, p)
	}
}

// seek and next are the iterator's steps, guarded like find; fn is called
// outside the guard so a panic of the caller's stays the caller's.
func seek(m *mapping, prefix []byte) (it skiplist.Iterator, err error) {
	defer recoverFault(m, &err, debug.SetPanicOnFault(true))
	return m.list.Seek(prefix), nil
}

func next(m *mapping, it *skiplist.Iterator) (err error) {
	defer recoverFault(m, &err, debug.SetPanicOnFault(true))
	it.Next()
	return nil
}

// Len returns the number of live entries (0 after Close). Like every read
// it follows the region into a new file when the writer rebuilt it.
func (r *Reader) Len() int {
	h, m, err := r.begin()
	if err != nil {
		return 0
	}
	n := int(atomic.LoadUint64(&m.hdr.entries))
	r.end(h)
	return n
}

// Generation returns the number of commits made to the region so far (0
// after Close).
func (r *Reader) Generation() uint64 {
	h, m, err := r.begin()
	if err != nil {
		return 0
	}
	g := m.loadGeneration()
	r.end(h)
	return g
}

// Place returns the center and revision the region's writer recorded.
func (r *Reader) Place() (center string, revision uint64) {
	h, m, err := r.begin()
	if err != nil {
		return "", 0
	}
	defer r.end(h)
	return placeOf(m.hdr)
}

// Seq returns the region's change sequence: a counter that the writer bumps
// after every commit, to pass to Wait.
// It returns 0 after Close.
func (r *Reader) Seq() uint32 {
	if r.cur.Load() == nil {
		return 0
	}
	return atomic.LoadUint32(r.ctl.notifySeq())
}

// Wait blocks until the change sequence differs from seen, and returns the
// new value. It sleeps on a futex in the control file, woken by the writer's
// commit, and returns ctx's error when ctx ends.
func (r *Reader) Wait(ctx context.Context, seen uint32) (uint32, error) {
	for {
		if err := ctx.Err(); err != nil {
			return seen, err
		}
		if r.cur.Load() == nil {
			return seen, ErrClosed
		}
		slice := 100 * time.Millisecond
		if d, ok := ctx.Deadline(); ok {
			slice = min(slice, max(time.Until(d), time.Microsecond))
		}
		if cur := r.ctl.wait(seen, slice); cur != seen {
			return cur, nil
		}
	}
}

// Close closes the reader: later reads fail with ErrClosed. Reads already
// under way finish normally: the slots they hold and the mappings are
// released only after the read lease has passed (so a concurrent read never
// touches unmapped memory, and its slot is never handed to another process
// while it still writes to it). Slots of idle handles go back at once;
// those of handles the pool keeps out of Close's reach (other processors'
// caches) go back after the lease too. So open a Reader once and keep it: a
// process that opens and closes Readers in a loop holds up to a lease's
// worth of their slots, and can run out of them (ErrNoSlots). Slices
// obtained from View or Scan must not be used after Close.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	if r.sweeper != nil {
		r.sweeper.Stop()
	}
	maps := []*mapping{r.cur.Swap(nil)}
	for _, rm := range r.retired {
		maps = append(maps, rm.m)
	}
	r.retired = nil
	r.mu.Unlock()

	// A handle in the pool is not in use by any read: its slot can go
	// back now. (With the reader closed, the pool's New returns nil once
	// the pool is empty.)
	var idle []int
	for {
		h, _ := r.handles.Get().(*readHandle)
		if h == nil {
			break
		}
		idle = append(idle, h.i)
	}
	r.mu.Lock()
	for _, i := range idle {
		if r.mine[i] {
			r.ctl.releaseSlot(i)
			delete(r.mine, i)
		}
	}
	busy := r.mine
	r.mine = map[int]bool{}
	ctl := r.ctl
	r.mu.Unlock()
	time.AfterFunc(r.lease, func() {
		// busy holds the slots of handles not in this goroutine's view of
		// the pool: idle ones (in other processors' pool caches, or in open
		// Sessions; no read can start once cur is nil) and those of reads
		// still running. Only a running read has a non-zero epoch.
		var running []int
		for i := range busy {
			if atomic.LoadUint64(&ctl.slot(i).epoch) != 0 {
				running = append(running, i)
			}
		}
		if len(running) == 0 {
			for i := range busy {
				ctl.releaseSlot(i)
			}
			for _, m := range maps {
				_ = m.unmap()
			}
			_ = ctl.close()
			return
		}
		// Reads that began before Close are still running and may yet
		// touch the mappings. They get private zero pages in place of the
		// files, and report ErrClosed when they end.
		r.detached.Store(true)
		for _, m := range maps {
			_ = replaceWithZeros(m.mem, false)
		}
		slots := make([]int, 0, len(busy))
		for i := range busy {
			slots = append(slots, i)
		}
		_ = ctl.detach(slots)
	})
	return nil
}

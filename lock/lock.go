// Package lock is the cross-process reader/writer lock that lives in the
// region's control file (bytes 4096-8191), shared read-write by the single
// writer process and every reader process.
//
// # Protocol
//
// The lock is a handful of 64-bit "holder words" and one 32-bit futex word,
// all in memory that every process maps MAP_SHARED. All shared accesses are
// sync/atomic operations, which Go makes sequentially consistent: there is
// one total order of them that every process agrees on, and the arguments
// below lean on it.
//
// A holder word (proc.go) names a process (pid and start time) and one
// acquisition by it (a nonce). 0 means free.
//
//	writer       the write side. Written only by CAS: 0 -> w|D (a writer
//	             claims it and starts waiting for readers; D is the
//	             draining bit), w|D -> w (the readers are gone: the writer
//	             is in), w -> 0 (its holder releases, or someone clears it
//	             because its holder is dead or has stood in the way past
//	             Timeout), w -> w'|D (a writer takes it over from a dead or
//	             timed-out holder). Read by every acquirer.
//	readers[i]   one read acquisition. Written only by CAS: 0 -> r (a reader
//	             claims the slot), r -> 0 (its holder releases, the holder
//	             backs off because it met a writer, or a writer clears it
//	             because its holder is dead or has held it past Timeout).
//	             Read by readers looking for a free slot and by writers.
//	seq          the futex word. Incremented (atomic add) by whoever changed
//	             a holder word while waiters != 0, then FUTEX_WAKE.
//	             Loaded by waiters before they look at the holder words.
//	waiters      atomic add +1 / -1 around each sleep.
//	forced,      statistics, atomic add by whoever cleared the holder;
//	recovered    loaded by Stats.
//	magic, version, nreaders
//	             written by Init (magic last) before anyone else maps the
//	             lock; read by New.
//
// Since every change of a holder word is a CAS from the value the actor saw,
// two actors can never both succeed on the same acquisition: exactly one of
// {the holder's release, a recoverer, a forcer} wins it, and the losers learn
// so from the failed CAS. Nonces make every acquisition's word distinct (up
// to 2^16 acquisitions by the same process on the same word), so a holder
// whose lock was forced cannot release somebody else's: its CAS fails and it
// gets ErrLockLost.
//
// # Acquiring
//
// Write, in two phases:
//
//  1. CAS writer 0 -> me|D. From this moment no new reader can get in
//     (writer preference: a stream of readers cannot starve a writer, since
//     readers never write this word).
//  2. Wait until every readers[i] is 0, loading them one by one.
//  3. CAS writer me|D -> me. The writer is in. (If the CAS fails, the word
//     was forced from it while it waited: start again at 1.)
//
// Read:
//
//  1. Wait until writer is 0.
//  2. CAS some readers[i] 0 -> me.
//  3. Load writer again. If it is no longer 0, a writer arrived: CAS
//     readers[i] me -> 0, wake, and go back to 1.
//
// Mutual exclusion is Dekker's argument on the total order: a writer stores
// writer then loads readers[i]; a reader stores readers[i] then loads writer.
// Whichever store comes first in the order is seen by the other side's later
// load, so either the writer sees the reader's slot (and waits for it), or the
// reader sees the writer (and backs off), or both (the reader backs off and
// the writer waits for the back-off); never neither.
//
// # Dead and slow holders
//
// An acquirer that must wait first asks whether the holder in its way is
// alive (Alive: pid exists, is not a zombie, has the recorded start time);
// a dead holder is cleared at once with CAS (counted in recovered). While it
// waits it asks again every probeInterval, because a holder that dies during
// the wait never wakes anyone. Once the same holder word has stood in its way
// for Timeout it clears every live holder still in its way (counted in
// forced): a writer forces the writer word to itself and then clears reader
// slots; a reader clears the writer word. A holder from the acquirer's own
// process is never judged dead (it is running) but is forced after Timeout
// like any other.
//
// The clock restarts whenever the holder word in the way changes, so Timeout
// measures one holder, not the waiter's whole wait: a waiter that lost the
// race to three writers in a row forces none of them, and a writer's hold is
// counted from the moment it got in (step 3 changes the word), not from when
// it began waiting for readers. A writer's wait for readers is timed from
// its step 1: no new reader can arrive then, so every reader it forces has
// stood in its way for the whole Timeout.
//
// Forcing a live holder breaks mutual exclusion with that holder: it is the
// seed's escape hatch against a stuck process, so Timeout must exceed the
// longest critical section. The victim finds out when it releases
// (ErrLockLost). A writer forced out of the writer word while it waits for
// readers starts again from phase 1.
//
// A slot a reader holds between its claim and its back-off (read step 3)
// looks like a read holder to a writer: the writer waits for it, and the
// back-off clears it within nanoseconds unless the reader died, in which
// case it is recovered like any dead reader.
//
// # Waiting
//
// A waiter loads seq, adds itself to waiters, re-checks the holder word it is
// blocked on, and only if that is unchanged calls FUTEX_WAIT(seq, loaded
// value). Whoever changes a holder word then loads waiters and, if non-zero,
// increments seq and calls FUTEX_WAKE. Either the waiter's re-check sees the
// change, or the changer's load of waiters sees the waiter, and then the
// increment either precedes the wait (which returns at once since seq
// differs) or follows it (and the wake reaches it): no wake-up is lost. No
// system call is made by a release nobody waits for. Every sleep is capped at
// probeInterval, so a wake-up lost anyway (a waiter killed with waiters
// counted only costs spurious wakes; a failed FUTEX_WAKE) costs latency,
// never progress. Wakes go to all sleepers, which re-check; the lock is built
// for a handful of processes, not for thousands of contending threads.
//
// # Untrusted memory
//
// Any reader process can write these bytes. The lock never follows an offset
// or a size read from them, and a garbage holder word only looks like a holder
// that is dead (recovered at once) or alive (forced after Timeout).
package lock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// DefaultTimeout is the Timeout used when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// probeInterval bounds every futex sleep: how often a waiter checks whether
// the holders in its way have died, and how stale a lost wake-up can leave it.
const probeInterval = 10 * time.Millisecond

var (
	// ErrLayout is returned by Init and New for memory of the wrong size or
	// alignment, or that Init has not prepared.
	ErrLayout = errors.New("lock: bad lock layout")
	// ErrLockLost is returned by Unlock and RUnlock when the lock had been
	// forced from the caller (held past Timeout, or by ForceUnlock). The
	// lock's state is left untouched.
	ErrLockLost = errors.New("lock: lock was forced from this holder")
	// ErrBadGrant is returned when Unlock gets a read grant, RUnlock a write
	// grant, or either a zero Grant.
	ErrBadGrant = errors.New("lock: grant of the wrong kind")
	// ErrNoReaderSlot is returned by RLock when all Readers slots stayed held
	// by live readers for Timeout. Readers are not forced out to make room:
	// they do not exclude each other.
	ErrNoReaderSlot = errors.New("lock: every reader slot is held")
)

// Options configure a handle on the lock. The zero value is usable.
type Options struct {
	// Timeout is how long an acquisition waits in total for live holders
	// before it forces them out. Dead holders are recovered at once,
	// whatever Timeout says. Zero means DefaultTimeout (2s); it must
	// exceed the longest critical section of any process.
	Timeout time.Duration
}

// RW is one process's handle on the shared lock. It is safe for concurrent
// use by many goroutines; each acquisition is its own Grant.
type RW struct {
	s       *shared
	self    Holder
	timeout time.Duration
	nonce   atomic.Uint32
}

// Grant is one acquisition, returned by Lock or RLock and handed back to
// Unlock or RUnlock.
type Grant struct {
	// Forced counts live holders this acquisition took the lock from after
	// Timeout.
	Forced int
	// Recovered counts dead holders this acquisition cleared.
	Recovered int

	word  uint64 // this acquisition's holder word; 0 in the zero Grant
	slot  int    // reader slot index for a read grant
	write bool
}

// Stats is a snapshot of the lock's shared state.
type Stats struct {
	Writer    int    // pid of the write holder (or of a writer waiting for readers); 0 if none
	Readers   int    // reader slots held
	Waiters   int    // callers sleeping on the futex
	Forced    uint64 // live holders forced out after Timeout or by ForceUnlock, ever
	Recovered uint64 // dead holders cleared, ever
}

// Init prepares mem (Size bytes, 8-byte aligned, usually bytes 4096-8191 of
// a freshly created control file) as a free lock. Only the creator calls it,
// before any other process uses the memory: it erases any lock state there.
func Init(mem []byte) error {
	if err := check(mem); err != nil {
		return err
	}
	s := view(mem)
	atomic.StoreUint32(&s.hdr.magic, 0)
	clear(mem)
	s.hdr.version = layoutVersion
	s.hdr.nreaders = Readers
	// Published last: New refuses the memory until this store.
	atomic.StoreUint32(&s.hdr.magic, layoutMagic)
	return nil
}

// New returns a handle on the lock that Init prepared in mem. mem must stay
// mapped for as long as the handle is used.
func New(mem []byte, opts Options) (*RW, error) {
	if err := check(mem); err != nil {
		return nil, err
	}
	s := view(mem)
	if m := atomic.LoadUint32(&s.hdr.magic); m != layoutMagic {
		return nil, fmt.Errorf("%w: magic %#x, not initialized", ErrLayout, m)
	}
	if s.hdr.version != layoutVersion || s.hdr.nreaders != Readers {
		return nil, fmt.Errorf("%w: version %d with %d reader slots, want version %d with %d",
			ErrLayout, s.hdr.version, s.hdr.nreaders, layoutVersion, Readers)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("lock: negative timeout %v", opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	self, err := Self()
	if err != nil {
		return nil, err
	}
	rw := &RW{s: s, self: self, timeout: opts.Timeout}
	// Different handles in one process start their nonces apart.
	rw.nonce.Store(uint32(time.Now().UnixNano()))
	return rw, nil
}

// Lock acquires the write side. See LockContext.
func (rw *RW) Lock() (Grant, error) { return rw.LockContext(context.Background()) }

// LockContext acquires the write side, waiting on the futex while others
// hold the lock. A dead holder is cleared at once; live holders still in the
// way after Timeout are forced out (counted in g.Forced). It returns
// ctx.Err() if ctx ends first (noticed within probeInterval).
func (rw *RW) LockContext(ctx context.Context) (g Grant, err error) {
	s := rw.s
	me := rw.nextWord()
	g = Grant{word: me, write: true}
	var w waiting
	for {
		if err := rw.claimWriter(ctx, &w, me, &g); err != nil {
			return Grant{}, err
		}
		done, err := rw.drainReaders(ctx, &w, me, &g)
		if err != nil {
			if atomic.CompareAndSwapUint64(&s.hdr.writer, me|draining, 0) {
				rw.wake()
			}
			return Grant{}, err
		}
		if done {
			return g, nil
		}
		// Forced out of the writer word while waiting for readers: start over.
	}
}

// claimWriter is phase 1 of a write acquisition: it makes the writer word me.
func (rw *RW) claimWriter(ctx context.Context, w *waiting, me uint64, g *Grant) error {
	s := rw.s
	for {
		seq := atomic.LoadUint32(&s.hdr.seq)
		cur := atomic.LoadUint64(&s.hdr.writer)
		if cur == 0 {
			if atomic.CompareAndSwapUint64(&s.hdr.writer, 0, me|draining) {
				return nil
			}
			continue
		}
		probe, force := w.due(rw.timeout, cur)
		// Take the word over directly, so that no other waiter slips in.
		if rw.settle(&s.hdr.writer, cur, me|draining, probe, force, g) {
			return nil
		}
		if err := w.sleep(ctx, rw, seq, func() bool { return atomic.LoadUint64(&s.hdr.writer) != cur }); err != nil {
			return err
		}
	}
}

// drainReaders is phase 2 of a write acquisition: the writer word is me, and
// it waits until no reader slot is held. It reports false if the writer word
// was forced away from me meanwhile.
func (rw *RW) drainReaders(ctx context.Context, w *waiting, me uint64, g *Grant) (bool, error) {
	s := rw.s
	for {
		seq := atomic.LoadUint32(&s.hdr.seq)
		if atomic.LoadUint64(&s.hdr.writer) != me|draining {
			return false, nil
		}
		busy := -1
		probe, force := false, false
		cleared := false
		for i := range s.readers {
			r := atomic.LoadUint64(&s.readers[i])
			if r == 0 {
				continue
			}
			if busy < 0 {
				busy = i
				probe, force = w.due(rw.timeout, me|draining)
			}
			if rw.settle(&s.readers[i], r, 0, probe, force, g) {
				cleared = true
			}
		}
		if busy < 0 {
			// Step 3: in, unless the word was forced from us meanwhile.
			return atomic.CompareAndSwapUint64(&s.hdr.writer, me|draining, me), nil
		}
		if cleared {
			continue
		}
		slot := &s.readers[busy]
		old := atomic.LoadUint64(slot)
		err := w.sleep(ctx, rw, seq, func() bool {
			return atomic.LoadUint64(slot) != old || atomic.LoadUint64(&s.hdr.writer) != me|draining
		})
		if err != nil {
			return false, err
		}
	}
}

// Unlock releases the write side acquired as g. It returns ErrLockLost,
// changing nothing, if the lock was forced from g meanwhile.
func (rw *RW) Unlock(g Grant) error {
	if !g.write || g.word == 0 {
		return ErrBadGrant
	}
	if !atomic.CompareAndSwapUint64(&rw.s.hdr.writer, g.word, 0) {
		return ErrLockLost
	}
	rw.wake()
	return nil
}

// RLock acquires the read side. See RLockContext.
func (rw *RW) RLock() (Grant, error) { return rw.RLockContext(context.Background()) }

// RLockContext acquires the read side: any number of readers hold it at
// once, up to Readers across all processes, and never together with a
// writer. A reader waits while a writer holds the lock or waits for it. A
// dead writer is cleared at once; a live one is forced out after Timeout. It
// returns ErrNoReaderSlot if all slots stayed held for Timeout, and
// ctx.Err() if ctx ends first.
func (rw *RW) RLockContext(ctx context.Context) (g Grant, err error) {
	s := rw.s
	me := rw.nextWord()
	g = Grant{word: me}
	// Start the slot search at a place that differs between processes and
	// between acquisitions, so claims rarely collide; consecutive
	// acquisitions start on different cache lines (8 slots a line).
	n := (me >> (pidBits + startBits)) & nonceMask
	first := int(n*8+n/16+uint64(rw.self.Pid)*7) % Readers
	var w waiting
	for {
		seq := atomic.LoadUint32(&s.hdr.seq)
		if wr := atomic.LoadUint64(&s.hdr.writer); wr != 0 {
			probe, force := w.due(rw.timeout, wr)
			if rw.settle(&s.hdr.writer, wr, 0, probe, force, &g) {
				continue
			}
			if err := w.sleep(ctx, rw, seq, func() bool { return atomic.LoadUint64(&s.hdr.writer) != wr }); err != nil {
				return Grant{}, err
			}
			continue
		}
		i := rw.claimSlot(first, me)
		if i < 0 {
			if err := rw.waitSlot(ctx, &w, seq, &g); err != nil {
				return Grant{}, err
			}
			continue
		}
		if atomic.LoadUint64(&s.hdr.writer) == 0 {
			g.slot = i
			return g, nil
		}
		// A writer claimed the lock between our two loads of writer: back
		// off so that it can drain us, and wait behind it.
		if atomic.CompareAndSwapUint64(&s.readers[i], me, 0) {
			rw.wake()
		}
	}
}

// claimSlot claims a free reader slot for me, searching from first; it
// returns the slot's index, or -1 if every slot is held.
func (rw *RW) claimSlot(first int, me uint64) int {
	for k := range Readers {
		i := (first + k) % Readers
		slot := &rw.s.readers[i]
		if atomic.LoadUint64(slot) == 0 && atomic.CompareAndSwapUint64(slot, 0, me) {
			return i
		}
	}
	return -1
}

// waitSlot handles a full reader table: it clears slots of dead readers and
// otherwise sleeps until a slot frees, giving up after Timeout.
func (rw *RW) waitSlot(ctx context.Context, w *waiting, seq uint32, g *Grant) error {
	probe, force := w.due(rw.timeout, 0)
	cleared := false
	for i := range rw.s.readers {
		if r := atomic.LoadUint64(&rw.s.readers[i]); r != 0 && rw.settle(&rw.s.readers[i], r, 0, probe, false, g) {
			cleared = true
		}
	}
	if cleared {
		return nil
	}
	if force {
		return ErrNoReaderSlot
	}
	return w.sleep(ctx, rw, seq, func() bool {
		for i := range rw.s.readers {
			if atomic.LoadUint64(&rw.s.readers[i]) == 0 {
				return true
			}
		}
		return false
	})
}

// RUnlock releases the read side acquired as g. It returns ErrLockLost,
// changing nothing, if a writer forced g's slot free meanwhile.
func (rw *RW) RUnlock(g Grant) error {
	if g.write || g.word == 0 || g.slot < 0 || g.slot >= Readers {
		return ErrBadGrant
	}
	if !atomic.CompareAndSwapUint64(&rw.s.readers[g.slot], g.word, 0) {
		return ErrLockLost
	}
	rw.wake()
	return nil
}

// ForceUnlock clears every holder of both sides at once, without waiting,
// and returns how many it cleared. It is the operator's tool for a lock
// known to be stuck (shmreg fsck); the holders it clears get ErrLockLost
// when they release. Live holders count in Stats.Forced, dead ones in
// Stats.Recovered.
func (rw *RW) ForceUnlock() int {
	n := 0
	clearWord := func(addr *uint64) {
		if v := atomic.LoadUint64(addr); v != 0 && atomic.CompareAndSwapUint64(addr, v, 0) {
			n++
			if sameProcess(v, rw.self) || wordAlive(v) {
				atomic.AddUint64(&rw.s.hdr.forced, 1)
			} else {
				atomic.AddUint64(&rw.s.hdr.recovered, 1)
			}
		}
	}
	clearWord(&rw.s.hdr.writer)
	for i := range rw.s.readers {
		clearWord(&rw.s.readers[i])
	}
	if n > 0 {
		rw.wake()
	}
	return n
}

// Stats returns a snapshot of the lock's state. The fields are loaded one by
// one, not at a single instant.
func (rw *RW) Stats() Stats {
	h := &rw.s.hdr
	st := Stats{
		Writer:    wordPid(atomic.LoadUint64(&h.writer)),
		Waiters:   int(atomic.LoadUint32(&h.waiters)),
		Forced:    atomic.LoadUint64(&h.forced),
		Recovered: atomic.LoadUint64(&h.recovered),
	}
	for i := range rw.s.readers {
		if atomic.LoadUint64(&rw.s.readers[i]) != 0 {
			st.Readers++
		}
	}
	return st
}

// nextWord returns a holder word for a new acquisition by this process.
func (rw *RW) nextWord() uint64 {
	return pack(rw.self, uint16(rw.nonce.Add(1)))
}

// settle clears the holder word *addr, which held cur, replacing it by repl:
// at once if probe is set and cur's process is dead, or if force is set. It
// reports whether it did, counting the clearance in the shared counters and
// in g, and wakes the waiters.
func (rw *RW) settle(addr *uint64, cur, repl uint64, probe, force bool, g *Grant) bool {
	if probe && !sameProcess(cur, rw.self) && !wordAlive(cur) {
		if !atomic.CompareAndSwapUint64(addr, cur, repl) {
			return false
		}
		atomic.AddUint64(&rw.s.hdr.recovered, 1)
		g.Recovered++
		rw.wake()
		return true
	}
	if force {
		if !atomic.CompareAndSwapUint64(addr, cur, repl) {
			return false
		}
		atomic.AddUint64(&rw.s.hdr.forced, 1)
		g.Forced++
		rw.wake()
		return true
	}
	return false
}

// wake wakes every sleeper if there is one. It follows a change of a holder
// word; see "Waiting" above for why checking waiters first loses no wake-up.
func (rw *RW) wake() {
	h := &rw.s.hdr
	if atomic.LoadUint32(&h.waiters) == 0 {
		return
	}
	atomic.AddUint32(&h.seq, 1)
	// A failed wake is not fatal: sleepers give up after probeInterval.
	_, _ = FutexWake(&h.seq, math.MaxInt32)
}

// waiting is the timing state of one acquisition that had to wait.
type waiting struct {
	blocker   uint64    // the holder word the clock runs for
	deadline  time.Time // zero until the acquisition first finds the lock held
	nextProbe time.Time
	now       time.Time
}

// due starts the clock when the acquisition first finds blocker in its way,
// and restarts it whenever blocker changes. It reports whether the holders in
// the way should now be probed for liveness (at once, then every
// probeInterval) and whether the same blocker has stood there for timeout
// (force them).
func (w *waiting) due(timeout time.Duration, blocker uint64) (probe, force bool) {
	w.now = time.Now()
	if w.deadline.IsZero() || blocker != w.blocker {
		w.blocker = blocker
		w.deadline = w.now.Add(timeout)
		w.nextProbe = w.now.Add(probeInterval)
		return true, false
	}
	if !w.now.Before(w.nextProbe) {
		probe = true
		w.nextProbe = w.now.Add(probeInterval)
	}
	return probe, !w.now.Before(w.deadline)
}

// sleep waits on the futex until a holder word changes (changed reports it),
// the next probe or the deadline is due, or ctx ends. seq is the value of
// the futex word loaded before the caller looked at the holder words.
func (w *waiting) sleep(ctx context.Context, rw *RW, seq uint32, changed func() bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := min(w.deadline.Sub(w.now), w.nextProbe.Sub(w.now))
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	if d <= 0 {
		return nil
	}
	h := &rw.s.hdr
	atomic.AddUint32(&h.waiters, 1)
	var err error
	if !changed() {
		err = FutexWait(&h.seq, seq, d)
	}
	atomic.AddUint32(&h.waiters, ^uint32(0))
	if err != nil && !errors.Is(err, ErrWaitTimeout) {
		return fmt.Errorf("lock: futex wait: %w", err)
	}
	return nil
}

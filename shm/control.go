package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edsrzf/mmap-go"
	"github.com/shmreg/shmreg/lock"
	"golang.org/x/sys/unix"
)

// control is a mapping of a region's control file: the futex word, the
// reader/writer lock and the reader slots. Every process maps it read-write.
//
// Reader slots follow LMDB's reader table. A process claims slot i by taking
// an exclusive OFD byte-range lock on the slot's first byte; the lock is
// released by the kernel when the process dies, so anyone can tell a dead
// reader's slot from a live one with F_OFD_GETLK, whatever pid the kernel has
// since handed out. A slot's epoch is written only by its owner, except that
// the writer may compare-and-swap epochForced into a slot held past its
// lease; the owner finds the mark when it ends its read and reports
// ErrEvicted instead of what it read. The writer frees a dead owner's slot
// by a compare-and-swap of its owner token to 0.
type control struct {
	file  *os.File
	mem   mmap.MMap
	hdr   *ctlHeader
	slots int // slot count, fixed when the file was created and checked against its size
}

func ctlSize(slots int) int64 { return int64(ctlSlotsOff + slots*slotSize) }

// openControl maps the control file at path, creating it with slots slots
// if create is set and it does not exist.
//
// A new control file is built whole under a temporary name and then linked
// into place, so a reader that opens the region at the moment it is created
// finds either no control file (ErrNoRegion) or a complete one, never an
// empty or half-written one. Two writers creating at once both link; one
// wins, and the other opens the winner's file (and then finds it busy).
func openControl(path string, create bool, slots int, perm os.FileMode) (*control, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) && create {
		f, err = createControl(path, slots, perm)
	}
	if err != nil {
		return nil, fileError(path, err)
	}
	c, err := mapControl(f, create, slots, perm)
	if err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// createControl writes a fresh control file beside path and links it to
// path, returning it open; if path appeared meanwhile it opens that one.
func createControl(path string, slots int, perm os.FileMode) (*os.File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	c, err := mapControl(tmp, true, slots, perm)
	if err != nil {
		tmp.Close()
		return nil, err
	}
	if err := c.close(); err != nil { // also closes tmp
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return os.OpenFile(path, os.O_RDWR, 0)
}

func mapControl(f *os.File, create bool, slots int, perm os.FileMode) (*control, error) {
	path := f.Name()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(path, err)
	}
	fresh := fi.Size() == 0
	if fresh {
		if !create {
			return nil, fmt.Errorf("%w: %s is empty", ErrTruncated, path)
		}
		if err := f.Chmod(perm); err != nil {
			return nil, fileError(path, err)
		}
		if err := unix.Fallocate(int(f.Fd()), 0, 0, ctlSize(slots)); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil, fmt.Errorf("%w: %s: %v", ErrNoSpace, path, err)
			}
			if err := f.Truncate(ctlSize(slots)); err != nil {
				return nil, fileError(path, err)
			}
		}
	} else if fi.Size() < ctlSlotsOff {
		return nil, fmt.Errorf("%w: control file %s is %d bytes", ErrTruncated, path, fi.Size())
	}
	mm, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: map %s: %w", path, err)
	}
	c := &control{file: f, mem: mm, hdr: ctlAt(mm)}
	if fresh {
		copy(c.hdr.magic[:], ctlMagic)
		c.hdr.version = ControlVersion
		c.hdr.slotCount = uint32(slots)
		c.hdr.fileSize = uint64(ctlSize(slots))
		c.hdr.createdNs = uint64(time.Now().UnixNano())
		if err := initLock(mm[ctlLockOff:ctlSlotsOff]); err != nil {
			_ = mm.Unmap()
			return nil, err
		}
	}
	if string(c.hdr.magic[:]) != ctlMagic {
		_ = mm.Unmap()
		return nil, fmt.Errorf("%w: control file %s", ErrBadMagic, path)
	}
	if c.hdr.version != ControlVersion {
		_ = mm.Unmap()
		return nil, fmt.Errorf("%w: control file %s has version %d, this build reads %d", ErrLayoutVersion, path, c.hdr.version, ControlVersion)
	}
	// The slot count is read from an untrusted file: believe only as many
	// slots as the file really holds.
	n := int(c.hdr.slotCount)
	if int64(len(mm)) < ctlSize(n) {
		_ = mm.Unmap()
		return nil, fmt.Errorf("%w: control file %s holds %d bytes, too few for %d slots", ErrTruncated, path, len(mm), n)
	}
	c.slots = n
	return c, nil
}

func (c *control) close() error {
	if c == nil {
		return nil
	}
	err := c.mem.Unmap()
	if cerr := c.file.Close(); err == nil {
		err = cerr
	}
	return err
}

// detach closes the control file while reads of this process may still be
// running and will, when they end, store to the slots they hold (busy).
// Their stores must not reach the file, where another process may own the
// slot by then: the mapping is first replaced in place by private memory,
// then the busy slots are released through the file itself (cleared with a
// write, unlocked), and the file is closed. The private memory stays
// mapped for the life of the process: one control file's size, and only
// when a Close raced reads that outlived the read lease. If the mapping
// cannot be replaced, the slots stay held and the file open (for the life
// of the process): safer than letting a late store reach another
// process's slot.
func (c *control) detach(busy []int) error {
	if err := replaceWithZeros(c.mem, true); err != nil {
		return fmt.Errorf("detach %s: %w", c.file.Name(), err)
	}
	var zero [16]byte // a slot's owner and epoch
	var err error
	for _, i := range busy {
		if _, werr := c.file.WriteAt(zero[:], int64(ctlSlotsOff+i*slotSize)); werr != nil && err == nil {
			err = werr
		}
		_ = c.slotLock(i, unix.F_UNLCK)
	}
	if cerr := c.file.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *control) slot(i int) *readerSlot { return slotAt(c.mem, i) }

// slotLock takes (typ F_WRLCK) or releases (F_UNLCK) slot i's liveness lock,
// without waiting.
func (c *control) slotLock(i int, typ int16) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: int64(ctlSlotsOff + i*slotSize), Len: 1}
	return unix.FcntlFlock(c.file.Fd(), unix.F_OFD_SETLK, &lk)
}

// slotOwnerAlive reports whether some open file description holds slot i's
// liveness lock, that is whether the process that claimed it is alive.
func (c *control) slotOwnerAlive(i int) bool {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: int64(ctlSlotsOff + i*slotSize), Len: 1}
	if err := unix.FcntlFlock(c.file.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return true // cannot tell: assume alive, never free what may be in use
	}
	return lk.Type != unix.F_UNLCK
}

// claimSlot finds a slot whose liveness lock nobody holds, takes the lock,
// and marks the slot as this process's. OFD locks never conflict with
// locks of the same open file description, so the slots this control
// mapping already holds (mine) must be skipped by the caller's own record.
func (c *control) claimSlot(nonce uint32, mine map[int]bool) (int, error) {
	pid := os.Getpid()
	for i := 0; i < c.slots; i++ {
		if mine[i] {
			continue
		}
		s := c.slot(i)
		if atomic.LoadUint64(&s.owner) != 0 && c.slotOwnerAlive(i) {
			continue
		}
		if err := c.slotLock(i, unix.F_WRLCK); err != nil {
			continue // taken since we looked, or held by another description of ours
		}
		atomic.StoreUint64(&s.epoch, 0)
		s.pid = uint32(pid)
		atomic.StoreUint64(&s.owner, uint64(pid)<<32|uint64(nonce))
		return i, nil
	}
	return -1, fmt.Errorf("%w: all %d slots of %s are held by live readers", ErrNoSlots, c.slots, c.file.Name())
}

// releaseSlot gives slot i back.
func (c *control) releaseSlot(i int) {
	s := c.slot(i)
	atomic.StoreUint64(&s.epoch, 0)
	atomic.StoreUint64(&s.owner, 0)
	_ = c.slotLock(i, unix.F_UNLCK)
}

// slotsInUse counts slots whose owner is alive.
func (c *control) slotsInUse() int {
	n := 0
	for i := 0; i < c.slots; i++ {
		if atomic.LoadUint64(&c.slot(i).owner) != 0 && c.slotOwnerAlive(i) {
			n++
		}
	}
	return n
}

// notifySeq is the futex word bumped after every commit.
func (c *control) notifySeq() *uint32 { return &c.hdr.notifySeq }

// notify announces a commit: bump the sequence, then wake waiters if any.
// The waiters count is kept by the waiters themselves; a waiter that died
// while waiting leaves it high, which costs only a useless wake-up call.
func (c *control) notify() {
	atomic.AddUint32(&c.hdr.notifySeq, 1)
	if atomic.LoadUint32(&c.hdr.notifyWaiters) != 0 {
		_, _ = lock.FutexWake(&c.hdr.notifySeq, 1<<31-1)
	}
}

// wait blocks until the sequence differs from seen or timeout passes.
func (c *control) wait(seen uint32, timeout time.Duration) uint32 {
	if cur := atomic.LoadUint32(&c.hdr.notifySeq); cur != seen {
		return cur
	}
	atomic.AddUint32(&c.hdr.notifyWaiters, 1)
	_ = lock.FutexWait(&c.hdr.notifySeq, seen, timeout)
	atomic.AddUint32(&c.hdr.notifyWaiters, ^uint32(0))
	return atomic.LoadUint32(&c.hdr.notifySeq)
}

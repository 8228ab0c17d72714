package shm

import (
	"errors"
	"time"

	"github.com/shmreg/shmreg/lock"
)

// regionLock is the region's reader/writer lock (package lock) in the
// control file. The writer holds its write side for each commit, so a
// Snapshot, which holds the read side, never sees half a commit. Lock-free
// reads (Get, View, Scan) do not touch it.
type regionLock struct {
	rw    *lock.RW
	grant lock.Grant
}

func newRegionLock(c *control, timeout time.Duration) (*regionLock, error) {
	rw, err := lock.New(c.lockMem(), lock.Options{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	return &regionLock{rw: rw}, nil
}

func (l *regionLock) lock() error {
	g, err := l.rw.Lock()
	if err != nil {
		return err
	}
	l.grant = g
	return nil
}

// unlock releases the write side. If a snapshot reader forced it away
// because the commit outlasted the lock timeout, there is nothing to
// release; the commit itself is complete either way (lock-free readers never
// depended on the lock), and the lock has counted the forcing.
func (l *regionLock) unlock() error {
	err := l.rw.Unlock(l.grant)
	l.grant = lock.Grant{}
	if errors.Is(err, lock.ErrLockLost) {
		return nil
	}
	return err
}

func (c *control) lockMem() []byte { return c.mem[ctlLockOff:ctlSlotsOff] }

// initLock prepares the lock area of a fresh control file.
func initLock(mem []byte) error { return lock.Init(mem) }

// lockCounters returns the lock's forced and recovered acquisition counts.
func lockCounters(c *control) (forced, recovered uint64) {
	rw, err := lock.New(c.lockMem(), lock.Options{})
	if err != nil {
		return 0, 0
	}
	st := rw.Stats()
	return st.Forced, st.Recovered
}

package shm

import (
	"errors"
	"fmt"

	"github.com/shmreg/shmreg/lock"
)

// Snapshot is a consistent view of the region: while it is open no commit is
// under way, so every key it reads comes from the same generation. It is
// valid only inside the function passed to Reader.Snapshot.
type Snapshot struct {
	m *mapping
}

// Snapshot calls fn with a consistent view of the region. It holds the read
// side of the region's reader/writer lock for as long as fn runs, which
// holds the writer back: keep fn short. If fn runs longer than the lock
// timeout the writer forces the lock and proceeds, and Snapshot returns
// ErrEvicted (fn's reads are then no longer guaranteed consistent).
func (r *Reader) Snapshot(fn func(s *Snapshot) error) (err error) {
	if r.cur.Load() == nil {
		return ErrClosed // (the control file may be released already)
	}
	rw, err := lock.New(r.ctl.lockMem(), lock.Options{Timeout: r.lockTimeout})
	if err != nil {
		return err
	}
	g, err := rw.RLock()
	if err != nil {
		return fmt.Errorf("shm: snapshot of %s: %w", r.path, err)
	}
	h, m, err := r.begin()
	if err != nil {
		_ = rw.RUnlock(g)
		return err
	}
	defer func() {
		if eerr := r.end(h); eerr != nil {
			err = eerr
		}
		if uerr := rw.RUnlock(g); errors.Is(uerr, lock.ErrLockLost) && err == nil {
			err = fmt.Errorf("%w: snapshot of %s outlived the lock timeout", ErrEvicted, r.path)
		}
	}()
	return fn(&Snapshot{m: m})
}

// Get returns a copy of key's value, or ErrNotFound.
func (s *Snapshot) Get(key []byte) ([]byte, error) {
	v, err := find(s.m, key)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), v...), nil
}

// View calls fn with key's value in place; see Reader.View.
func (s *Snapshot) View(key []byte, fn func(value []byte) error) error {
	v, err := find(s.m, key)
	if err != nil {
		return err
	}
	return fn(v)
}

// Scan calls fn for every entry under prefix in key order; see Reader.Scan.
func (s *Snapshot) Scan(prefix []byte, fn func(key, value []byte) bool) error {
	return scan(s.m, prefix, fn)
}

// Generation returns the generation the snapshot sees.
func (s *Snapshot) Generation() uint64 { return s.m.loadGeneration() }

package shm

import "runtime"

// Session is one goroutine's own way into a region: it holds a reader slot
// for as long as it is open, where Reader.View and Reader.Get take one from
// the reader's shared pool and give it back on every read. A read through a
// Session is the lookup itself, the fault guard and two stores to the
// session's own slot (plain stores where the process is registered for
// membarrier); nothing is shared with other goroutines. This is the
// path for code that makes lookups in a loop (a load balancer picking an
// instance per request, a proxy resolving every call).
//
// A Session is not safe for concurrent use: give each goroutine its own.
// An idle Session holds no memory back from reuse (its slot says idle
// between reads), but it does hold a reader slot of the control file until
// Close. A Session dropped without Close gives its slot back when the
// garbage collector finds it (the slot's handle carries a cleanup).
type Session struct {
	r      *Reader
	h      *readHandle
	active bool // a View is under way (fn may call back into the session)
	closed bool
}

// Session opens a Session on r, claiming a reader slot for it.
func (r *Reader) Session() (*Session, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	if r.cur.Load() == nil {
		r.handles.Put(h)
		return nil, ErrClosed
	}
	return &Session{r: r, h: h}, nil
}

// Close gives the session's slot back to its Reader. Later reads return
// ErrClosed. Closing twice is harmless; a Close from inside a View's
// callback takes effect when that View returns. (The slot of a session
// whose callback panicked goes back when the garbage collector finds it.)
func (s *Session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.active && s.r.cur.Load() != nil {
		// Between reads the slot is idle already. (A closed Reader
		// released this slot itself; see Reader.Close.)
		s.r.handles.Put(s.h)
	}
	return nil
}

// View calls fn with key's value as it lies in shared memory, like
// Reader.View. A View from inside fn (on the same session) reads through
// the Reader instead, so the outer value stays pinned.
//
// If fn panics, the panic is the caller's and the session is spent: it stays
// marked as inside a read, so its later reads go through the Reader, and
// its slot keeps the read's epoch until the writer forces it free after
// the read lease (memory reuse waits that long once). Close it and open
// another. Ending the read in a deferred call instead cost every lookup
// 37-51 ns, 11-15% of the whole read, in BenchmarkGet.
func (s *Session) View(key []byte, fn func(value []byte) error) error {
	if s.closed {
		return ErrClosed
	}
	if s.active {
		return s.r.View(key, fn)
	}
	h := s.h
	m, err := s.r.enter(h)
	if err != nil {
		return err
	}
	s.active = true
	v, err := find(m, key)
	if err == nil {
		err = fn(v)
	}
	s.active = false
	if eerr := s.r.ended(idleSlot(&h.slot.epoch)); eerr != nil {
		err = eerr
	}
	if s.closed { // fn closed the session
		s.r.handles.Put(h)
	}
	// A dropped Session's handle gives its slot back when collected: not
	// before the idle store above has landed.
	runtime.KeepAlive(h)
	return err
}

// Get returns a copy of key's value, or ErrNotFound, like Reader.Get.
func (s *Session) Get(key []byte) (value []byte, err error) {
	err = s.View(key, func(v []byte) error {
		value = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return value, nil
}

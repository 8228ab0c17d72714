package shm

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
	closed bool
}

// Session opens a Session on r, claiming a reader slot for it.
func (r *Reader) Session() (*Session, error) {
	h, err := r.handle()
	if err != nil {
		return nil, err
	}
	return &Session{r: r, h: h}, nil
}

// Close gives the session's slot back to its Reader. Later reads return
// ErrClosed. Closing twice is harmless.
func (s *Session) Close() error {
	if !s.closed {
		s.closed = true
		s.r.handles.Put(s.h)
	}
	return nil
}

// View calls fn with key's value as it lies in shared memory, like
// Reader.View. If fn panics, the slot keeps pinning what the read saw until
// the session's next read or Close (or the read lease forces it).
func (s *Session) View(key []byte, fn func(value []byte) error) error {
	if s.closed {
		return ErrClosed
	}
	r, h := s.r, s.h
	m, err := r.enter(h)
	if err != nil {
		return err
	}
	v, err := find(m, key)
	if err == nil {
		err = fn(v)
	}
	if idleSlot(&h.slot.epoch)&epochForced != 0 {
		return r.evicted()
	}
	return err
}

// Get returns a copy of key's value, or ErrNotFound, like Reader.Get.
func (s *Session) Get(key []byte) (value []byte, err error) {
	err = s.View(key, func(v []byte) error {
		value = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	return value, err
}

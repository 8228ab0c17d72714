package wire

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// outbox is the write side of a connection: senders queue encoded frames
// without blocking, and one goroutine (run) writes them out, flushing once
// per wake-up, so concurrent replies and pushes coalesce into few syscalls.
//
// Memory is bounded twice. Per connection: producers of many or large
// frames (pushes, long replies) go through send, which waits until at most
// a quarter of limit is queued, and a client that lets more than limit pile
// up (it does not read) is cut off. Per center: a frame of LargeFrame bytes
// or more also takes its size from a budget shared by every connection,
// given back once it is written (or dropped with the connection), so that
// many slow clients cannot together queue more than the budget.
type Outbox struct {
	mu      sync.Mutex
	frames  []queued
	bytes   int
	closing bool
	signal  chan struct{}
	drained chan struct{} // capacity 1: run wrote out what was queued
	done    chan struct{} // closed when run has closed the connection
	limit   int           // queued bytes beyond which enqueue reports overload
	shared  *semaphore.Weighted
	ctx     context.Context // cancelled when the Outbox closes: ends budget waits
	cancel  context.CancelFunc
	err     error // why Run stopped writing, if a write failed (guarded by mu)
	timeout time.Duration
}

// SetWriteTimeout sets how long a write may make no progress before Run
// gives up on the connection (default WriteTimeout). Call it before Run.
func (o *Outbox) SetWriteTimeout(d time.Duration) {
	if d > 0 {
		o.timeout = d
	}
}

// Err is the write error that ended Run, if one did (nil while it runs, or
// if it ended because the outbox was closed).
func (o *Outbox) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// queued is a frame waiting to be written and what it took from the shared
// budget.
type queued struct {
	b       []byte
	charged int64
}

// LargeFrame is the size from which a frame is charged to the shared
// budget: replies and single pushes stay below it and never wait for it.
const LargeFrame = 64 << 10

// NewOutbox returns an outbox; limit 0 means unbounded, shared nil means no
// center-wide budget (a client's side of a connection).
func NewOutbox(limit int, shared *semaphore.Weighted) *Outbox {
	o := &Outbox{signal: make(chan struct{}, 1), drained: make(chan struct{}, 1), done: make(chan struct{}), limit: limit, shared: shared, timeout: WriteTimeout}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	return o
}

// enqueue queues a frame; it returns ErrClosed after close and ErrOverloaded
// (the frame is still queued) once more than limit bytes are waiting.
func (o *Outbox) Enqueue(b []byte) error { return o.SendParts(false, b) }

// Queued is the number of bytes queued and not yet written.
func (o *Outbox) Queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// SendParts queues one frame made of parts (see EnqueueParts); with
// charge, a frame of LargeFrame bytes or more first takes its size from
// the shared budget, waiting for room (as Send does). It does not wait for
// room on the connection: callers pace themselves with WaitRoom.
func (o *Outbox) SendParts(charge bool, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var charged int64
	if charge && o.shared != nil && n >= LargeFrame {
		if err := o.shared.Acquire(o.ctx, int64(n)); err != nil {
			return ErrClosed
		}
		charged = int64(n)
	}
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		o.release(charged)
		return ErrClosed
	}
	for i, p := range parts {
		q := queued{b: p}
		if i == len(parts)-1 {
			q.charged = charged // given back once the whole frame is written
		}
		o.frames = append(o.frames, q)
		o.bytes += len(p)
	}
	over := o.limit > 0 && o.bytes > o.limit
	o.mu.Unlock()
	o.wake()
	if over {
		return ErrOverloaded
	}
	return nil
}

// EnqueueParts queues one frame made of several parts, written one after
// the other (a push's shared body between its subscriber's own head and
// tail, see SharedPush), with Enqueue's results.
func (o *Outbox) EnqueueParts(parts ...[]byte) error { return o.SendParts(false, parts...) }

// send queues a frame at the pace of the connection: it waits until at most
// a quarter of the limit is queued and, for a large frame, for its share of
// the shared budget. It returns ErrClosed if the outbox closes first.
func (o *Outbox) Send(b []byte) error {
	if !o.WaitRoom(o.limit / 4) {
		return ErrClosed
	}
	return o.SendParts(true, b)
}

func (o *Outbox) release(n int64) {
	if n > 0 {
		o.shared.Release(n)
	}
}

func (o *Outbox) wake() {
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// close queues an optional last frame and makes run flush and close the
// connection. It reports whether this call closed the outbox.
func (o *Outbox) Close(last []byte) bool {
	o.mu.Lock()
	first := !o.closing
	if first {
		if last != nil {
			o.frames = append(o.frames, queued{b: last})
		}
		o.closing = true
	}
	o.mu.Unlock()
	if first {
		o.cancel()
	}
	o.wake()
	return first
}

func (o *Outbox) IsClosing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing
}

// run writes queued frames until the outbox is closed (after flushing what
// was queued before) or a write fails; then it closes nc and gives back the
// budget of every frame it did not write. A write that makes no progress
// for WriteTimeout closes the connection: a client that does not read is
// cut off rather than buffered for.
func (o *Outbox) Run(nc net.Conn) {
	var iov net.Buffers
	defer func() {
		nc.Close()
		o.Close(nil)
		o.mu.Lock()
		left := o.frames
		o.frames, o.bytes = nil, 0
		o.mu.Unlock()
		for _, q := range left {
			o.release(q.charged)
		}
		close(o.done)
	}()
	// The two queues are swapped rather than reallocated at each wake-up
	// (a busy connection would otherwise grow a new one every time).
	var spare []queued
	for {
		<-o.signal
		o.mu.Lock()
		frames, closing := o.frames, o.closing
		o.frames, o.bytes = spare[:0], 0
		o.mu.Unlock()
		err := writeFrames(nc, frames, &iov, o.timeout)
		var charged int64
		for _, q := range frames {
			charged += q.charged
		}
		o.release(charged)
		if err != nil {
			o.mu.Lock()
			o.err = err
			o.mu.Unlock()
			return
		}
		if closing {
			return
		}
		clear(frames) // let written frames go
		if cap(frames) <= 256 {
			spare = frames[:0]
		} else {
			spare = nil
		}
		select {
		case o.drained <- struct{}{}:
		default:
		}
	}
}

// writeFrames sends frames in as few system calls as it can: gathered
// with writev on a plain TCP connection (a push's shared body is not even
// copied), through a pooled buffer otherwise (over TLS each small write
// would be a record of its own). A connection that is idle holds no write
// buffer either way.
func writeFrames(nc net.Conn, frames []queued, iov *net.Buffers, timeout time.Duration) error {
	if _, ok := nc.(*net.TCPConn); ok {
		// In pieces of at most writePiece bytes, each with its own
		// deadline: the timeout is for a connection that takes nothing,
		// not for a large batch going out to a slow but reading client.
		bufs := (*iov)[:0]
		var err error
		flush := func() {
			if err == nil && len(bufs) > 0 {
				nc.SetWriteDeadline(time.Now().Add(timeout))
				v := bufs // WriteTo consumes v; bufs keeps the backing array
				_, err = v.WriteTo(nc)
			}
			clear(bufs)
			bufs = bufs[:0]
		}
		n := 0
		for _, q := range frames {
			for b := q.b; len(b) > 0; {
				take := min(len(b), writePiece-n)
				bufs = append(bufs, b[:take])
				b, n = b[take:], n+take
				if n == writePiece {
					flush()
					n = 0
				}
			}
		}
		flush()
		if cap(bufs) <= 1024 {
			*iov = bufs[:0]
		} else {
			*iov = nil
		}
		return err
	}
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	defer func() {
		bw.Reset(nil)
		writers.Put(bw)
	}()
	for _, q := range frames {
		for b := q.b; len(b) > 0; {
			take := min(len(b), writePiece)
			nc.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := bw.Write(b[:take]); err != nil {
				return err
			}
			b = b[take:]
		}
	}
	nc.SetWriteDeadline(time.Now().Add(timeout))
	return bw.Flush()
}

// writePiece is how much is written under one deadline.
const writePiece = 256 << 10

// writers are the write buffers of connections that are not plain TCP,
// shared: a connection takes one only while it writes.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// waitRoom blocks until at most n bytes are queued, so that a producer of
// many frames (a large snapshot) goes at the pace of the connection instead
// of queueing it all. It returns false if the outbox closes first.
func (o *Outbox) WaitRoom(n int) bool {
	for {
		o.mu.Lock()
		queued, closing := o.bytes, o.closing
		o.mu.Unlock()
		if closing {
			return false
		}
		if queued <= n {
			return true
		}
		select {
		case <-o.drained:
		case <-o.done:
			return false
		}
	}
}

// Done is closed once Run has closed the connection.
func (o *Outbox) Done() <-chan struct{} { return o.done }

// WriteTimeout is how long a write to a connection may make no progress
// before the connection is closed.
const WriteTimeout = 10 * time.Second

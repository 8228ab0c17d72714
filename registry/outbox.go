package registry

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// outbox is the write side of a connection: senders queue encoded frames
// without blocking, and one goroutine (run) writes them out, flushing once
// per wake-up, so concurrent replies and pushes coalesce into few syscalls.
type outbox struct {
	mu      sync.Mutex
	frames  [][]byte
	bytes   int
	closing bool
	signal  chan struct{}
	drained chan struct{} // capacity 1: run wrote out what was queued
	done    chan struct{} // closed when run has closed the connection
	limit   int           // queued bytes beyond which enqueue reports overload
}

func newOutbox(limit int) *outbox {
	return &outbox{signal: make(chan struct{}, 1), drained: make(chan struct{}, 1), done: make(chan struct{}), limit: limit}
}

// enqueue queues a frame; it returns ErrClosed after close and ErrOverloaded
// (the frame is still queued) once more than limit bytes are waiting.
func (o *outbox) enqueue(b []byte) error {
	o.mu.Lock()
	if o.closing {
		o.mu.Unlock()
		return ErrClosed
	}
	o.frames = append(o.frames, b)
	o.bytes += len(b)
	over := o.limit > 0 && o.bytes > o.limit
	o.mu.Unlock()
	o.wake()
	if over {
		return ErrOverloaded
	}
	return nil
}

func (o *outbox) wake() {
	select {
	case o.signal <- struct{}{}:
	default:
	}
}

// close queues an optional last frame and makes run flush and close the
// connection. It reports whether this call closed the outbox.
func (o *outbox) close(last []byte) bool {
	o.mu.Lock()
	first := !o.closing
	if first {
		if last != nil {
			o.frames = append(o.frames, last)
		}
		o.closing = true
	}
	o.mu.Unlock()
	o.wake()
	return first
}

func (o *outbox) isClosing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing
}

// run writes queued frames until the outbox is closed (after flushing what
// was queued before) or a write fails; then it closes nc.
func (o *outbox) run(nc net.Conn) {
	defer close(o.done)
	defer nc.Close()
	bw := bufio.NewWriterSize(nc, 64<<10)
	for {
		<-o.signal
		o.mu.Lock()
		frames, closing := o.frames, o.closing
		o.frames, o.bytes = nil, 0
		o.mu.Unlock()
		nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, f := range frames {
			if _, err := bw.Write(f); err != nil {
				o.close(nil)
				return
			}
		}
		if err := bw.Flush(); err != nil {
			o.close(nil)
			return
		}
		if closing {
			return
		}
		select {
		case o.drained <- struct{}{}:
		default:
		}
	}
}

// waitRoom blocks until at most n bytes are queued, so that a producer of
// many frames (a large snapshot) goes at the pace of the connection instead
// of queueing it all. It returns false if the outbox closes first.
func (o *outbox) waitRoom(n int) bool {
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

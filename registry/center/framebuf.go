package center

import (
	"math/bits"
	"sync"
)

// frameBufs recycles the buffers of large frames (wire.LargeFrame bytes or
// more), so that a stream of them (a peer's replication, a flood) does not
// leave a trail of garbage for the collector: the heap then grows by about
// the inbound budget, not by twice the bytes received between collections.
// A buffer may be reused once its frame has been handled, because message
// bodies are decoded into fresh memory.
var frameBufs bufPool

// bufPool keeps buffers by power-of-two capacity class.
type bufPool struct {
	classes [32]sync.Pool
}

func (p *bufPool) get(n int) []byte {
	c := bits.Len(uint(n - 1)) // smallest class with 1<<c >= n
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<c)
}

func (p *bufPool) put(b []byte) {
	c := bits.Len(uint(cap(b) - 1))
	if cap(b) != 1<<c {
		return // not one of ours
	}
	b = b[:cap(b)]
	p.classes[c].Put(&b)
}

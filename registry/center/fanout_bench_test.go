package center

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// discardConn is a connection whose far end reads everything at once.
type discardConn struct {
	written atomic.Int64
	closed  chan struct{}
}

func (d *discardConn) Read([]byte) (int, error)         { <-d.closed; return 0, net.ErrClosed }
func (d *discardConn) Write(b []byte) (int, error)      { d.written.Add(int64(len(b))); return len(b), nil }
func (d *discardConn) Close() error                     { return nil }
func (d *discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (d *discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (d *discardConn) SetDeadline(time.Time) error      { return nil }
func (d *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (d *discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkFanOut measures the front's work to deliver one committed change
// to S live subscribers in 2 groups (half subscribe to svc/, half to
// svc/web/): picking, encoding once, queueing, and writing to each
// connection (whose far end takes everything). ns/delivery is the figure:
// it should not grow with S.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{100, 1_000, 10_000} {
		b.Run(fmt.Sprint("S=", subs), func(b *testing.B) {
			c, _ := newTestFront(b, Options{})
			c.ctx, c.cancel = context.WithCancel(context.Background())
			defer c.cancel()
			closed := make(chan struct{})
			defer close(closed)
			for i := range subs {
				nc := &discardConn{closed: closed}
				s := newSession(c, nc)
				go s.out.Run(nc)
				prefixes := []string{"svc/"}
				if i%2 == 1 {
					prefixes = []string{"svc/web/"}
				}
				sub := &subscriber{id: 1, tail: wire.PushTail(1), sess: s, maxBacklog: 1 << 20, live: true, notify: make(chan struct{}, 1)}
				c.subMu.Lock()
				c.join(sub, prefixes)
				c.subMu.Unlock()
				defer s.out.Close(nil)
			}
			rec := instanceRecord(b, "svc/web/1", time.Minute, 1)
			b.ResetTimer()
			for i := range b.N {
				r := *rec
				r.Rev = uint64(i + 1)
				c.fanOut([]pubBatch{{changes: []Change{{Key: r.Key, Rec: &r}}, rev: r.Rev}})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(subs), "ns/delivery")
			b.ReportMetric(0, "ns/op")
		})
	}
}

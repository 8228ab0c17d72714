package center

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// BenchmarkFanOut measures the front's work to deliver one committed change
// to S live subscribers in 2 groups (half subscribe to svc/, half to
// svc/web/): picking, encoding once, queueing, and writing to each
// connection, a loopback TCP connection whose far end reads everything.
// ns/delivery (wall time per delivered change, the far ends' reading
// included) is the figure: it should not grow with S.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{100, 1_000, 5_000} {
		b.Run(fmt.Sprint("S=", subs), func(b *testing.B) {
			c, _ := newTestFront(b, Options{})
			c.ctx, c.cancel = context.WithCancel(context.Background())
			defer c.cancel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			for i := range subs {
				far, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer far.Close()
				go io.Copy(io.Discard, far)
				nc, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
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

// BenchmarkFanOutManyGroups: every subscriber has prefixes of its own (a
// host's configuration, cfg/host<i>/) and each commit concerns one of them:
// the cost of a commit should not grow with the number of groups.
func BenchmarkFanOutManyGroups(b *testing.B) {
	for _, groups := range []int{10, 10_000} {
		b.Run(fmt.Sprint("groups=", groups), func(b *testing.B) {
			c, _ := newTestFront(b, Options{})
			c.ctx, c.cancel = context.WithCancel(context.Background())
			defer c.cancel()
			for i := range groups {
				s := &subscriber{id: 1, tail: wire.PushTail(1), maxBacklog: 1 << 20, notify: make(chan struct{}, 1)}
				c.subMu.Lock()
				c.join(s, []string{fmt.Sprintf("cfg/host%d/", i)})
				c.subMu.Unlock()
			}
			rec := &wire.Record{Key: "cfg/unwatched/x", Value: []byte("v")}
			b.ResetTimer()
			for i := range b.N {
				r := *rec
				r.Rev = uint64(i + 1)
				c.fanOut([]pubBatch{{changes: []Change{{Key: r.Key, Rec: &r}}, rev: r.Rev}})
			}
		})
	}
}

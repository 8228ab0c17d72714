package pair

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// TestFloodsStayBounded replays, against a center in a child process, the
// memory attacks of issue 13, and checks the center's resident memory and
// that an ordinary write still answers meanwhile:
//
//   - 300 connections each declaring a 4 MiB frame before their hello
//     (took a center from 32 MB to 1.28 GB): refused at 8 KiB;
//   - 300 authenticated writers each sending 1 MiB frames (the most a
//     client may): at most MaxInbound bytes of them are held at once;
//   - 1,000 subscriptions to everything (20,000 keys of 1 KB) on one
//     connection that never reads (took a center to 2.38 GB): 8 are
//     accepted, their snapshots are shared, and what is queued for the
//     connection is bounded by MaxConnQueue.
//
// The attackers come from 127.0.0.1 and the ordinary writer from
// 127.0.0.2, so that the per-address connection limit does not turn the
// writer away.
func TestFloodsStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a center with 20 MB and floods it (a few seconds)")
	}
	if raceEnabled {
		t.Skip("the race detector multiplies memory use; this test measures memory across processes, which it cannot see into anyway")
	}
	child := startChild(t, "", "127.0.0.1:0", "")
	ctx := tctx(t)
	admin := dialT(t, child.addr, registry.DialOptions{Role: wire.RoleAdmin})
	value := bytes.Repeat([]byte("v"), 1000)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 20000; i += 32 {
				if _, err := admin.Put(ctx, fmt.Sprintf("cfg/flood/%05d", i), value); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	base := rssOf(t, child.cmd.Process.Pid)
	t.Logf("center RSS with 20,000 records: %d MB", base>>20)

	// bound is what the center may grow by: the inbound (16 MiB) and
	// outbound (32 MiB) budgets, 32 KB of buffers for each of 256
	// connections, and the Go heap's slack (measured: +40 MB at most). An
	// attack that is not bounded grows by hundreds of megabytes in seconds.
	const bound = 64 << 20
	writer := &slowWriter{t: t, addr: child.addr}
	check := func(what string) {
		t.Helper()
		lat := writer.put(ctx)
		grow := rssOf(t, child.cmd.Process.Pid) - base
		t.Logf("%s: center RSS +%d MB, an ordinary put answered in %v", what, grow>>20, lat)
		if grow > bound {
			t.Errorf("%s: the center grew by %d MB, more than %d MB", what, grow>>20, bound>>20)
		}
		if lat > time.Second {
			t.Errorf("%s: an ordinary put took %v", what, lat)
		}
	}

	// 1. Frames declared before the hello.
	flood := func(hello bool) []net.Conn {
		var conns []net.Conn
		size := 4 << 20
		if hello {
			size = 1 << 20 /* the most a client may send */
		}
		payload := make([]byte, size)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(size))
		for range 300 {
			nc, err := net.Dial("tcp", child.addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, nc)
			go func() {
				if hello {
					b, _ := wire.EncodeFrame(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: wire.RoleAdmin})
					nc.Write(b)
				}
				for {
					nc.Write(hdr[:])
					if _, err := nc.Write(payload); err != nil {
						return
					}
				}
			}()
		}
		return conns
	}
	closeAll := func(conns []net.Conn) {
		for _, nc := range conns {
			nc.Close()
		}
	}
	conns := flood(false)
	time.Sleep(time.Second)
	check("300 x 4 MiB before hello")
	closeAll(conns)

	// 2. The same from authenticated writers (this center is Insecure).
	conns = flood(true)
	time.Sleep(2 * time.Second)
	check("300 writers sending 1 MiB frames")
	closeAll(conns)

	// 3. Subscriptions that are never read.
	nc, err := net.Dial("tcp", child.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, _ := wire.EncodeFrame(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: wire.RoleAgent})
	nc.Write(b)
	for i := range 1000 {
		b, _ := wire.EncodeFrame(wire.MsgSubscribe, uint64(2+i), &wire.SubscribeMsg{SubID: uint64(1 + i), Prefixes: []string{""}})
		if _, err := nc.Write(b); err != nil {
			break // the center may cut it off: that is fine too
		}
	}
	time.Sleep(2 * time.Second)
	check("1,000 subscriptions to everything, never read")
}

// slowWriter puts from 127.0.0.2, a source address of its own.
type slowWriter struct {
	t    *testing.T
	addr string
	n    int
}

func (w *slowWriter) put(ctx context.Context) time.Duration {
	w.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	nc, err := d.DialContext(ctx, "tcp", w.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	defer nc.Close()
	r := &rawConn{t: w.t, nc: nc, br: bufio.NewReader(nc)}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	r.hello(wire.RoleAdmin, "")
	w.n++
	start := time.Now()
	r.send(wire.MsgPut, 2, &wire.PutMsg{Key: fmt.Sprint("cfg/ordinary/", w.n), Value: []byte("x")})
	f, err := r.recv()
	if err != nil || f.Type != wire.MsgOK {
		w.t.Fatalf("ordinary put: %+v %v", f, err)
	}
	return time.Since(start)
}

// rssOf is a process's resident set size in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

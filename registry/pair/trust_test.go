package pair

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// Issue 13: who may write, how far a peer may move the clock, and what a
// center buffers for whom.

func TestWritersAndPeersNeedAuthentication(t *testing.T) {
	closed := testCenter(t, Options{})                                                // no token, not insecure: reads only
	withToken := testCenter(t, Options{Options: center.Options{Token: "s3cret"}})     // the token authenticates
	peersOnly := testCenter(t, Options{Options: center.Options{InsecurePeers: true}}) // peers let in, writers not
	open := testCenter(t, Options{Options: center.Options{Insecure: true}})           // everyone
	for _, tc := range []struct {
		name  string
		c     *Center
		role  wire.Role
		token string
		ok    bool
	}{
		{"no token: peer refused", closed, wire.RolePeer, "", false},
		{"no token: admin refused", closed, wire.RoleAdmin, "", false},
		{"no token: instance refused", closed, wire.RoleInstance, "", false},
		{"no token: agent may read", closed, wire.RoleAgent, "", true},
		{"token: peer without it refused", withToken, wire.RolePeer, "", false},
		{"token: peer with a wrong one refused", withToken, wire.RolePeer, "guess", false},
		{"token: peer with it", withToken, wire.RolePeer, "s3cret", true},
		{"token: admin with it", withToken, wire.RoleAdmin, "s3cret", true},
		{"insecure peers: peer", peersOnly, wire.RolePeer, "", true},
		{"insecure peers: admin still refused", peersOnly, wire.RoleAdmin, "", false},
		{"insecure: peer", open, wire.RolePeer, "", true},
		{"insecure: admin", open, wire.RoleAdmin, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := registry.Dial(tctx(t), tc.c.Addr().String(), registry.DialOptions{Role: tc.role, Token: tc.token})
			if !tc.ok {
				if !errors.Is(err, wire.ErrUnauthorized) {
					t.Fatalf("dial: %v, want wire.ErrUnauthorized", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.List(tctx(t), ""); err != nil {
				t.Fatal(err)
			}
		})
	}
	// An agent of a closed center reads but cannot write.
	ag := dialT(t, closed.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	if _, err := ag.Put(tctx(t), "cfg/x", []byte("1")); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("put by an unauthenticated agent: %v", err)
	}
	if _, err := New(Options{Options: center.Options{Insecure: true, Token: "t"}}); !errors.Is(err, wire.ErrInvalid) {
		t.Fatalf("Insecure with a Token: %v", err)
	}
}

// TestFarFutureVersionsAreRefused replays the attack of issue 13: a peer
// replicates a record stamped at the top of the clock (which wrapped the
// center's clock to 1970, so that its next acknowledged write lost to an
// older one) or in the year 2100 (which stamped every later write in 2100).
// The record is refused and counted; the center's next write is stamped
// now, and it is what the key holds.
func TestFarFutureVersionsAreRefused(t *testing.T) {
	y2100 := uint64(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()) << wire.HLCLogicalBits
	for _, tc := range []struct {
		name string
		hlc  uint64
	}{
		{"top of the clock", math.MaxUint64},
		{"year 2100", y2100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCenter(t, Options{Options: center.Options{Token: "t"}, DataDir: t.TempDir()})
			peer := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RolePeer, Token: "t", CenterID: "c-forger"})
			forged := &wire.Record{Key: "cfg/k", Value: []byte("forged"), Version: wire.Version{HLC: tc.hlc, Origin: "c-forger"}}
			if err := peer.Replicate(tctx(t), []*wire.Record{forged}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Get("cfg/k"); !errors.Is(err, wire.ErrNotFound) {
				t.Fatalf("the forged record was applied: %v", err)
			}
			admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin, Token: "t"})
			before := time.Now()
			v, err := admin.Put(tctx(t), "cfg/k", []byte("acknowledged"))
			if err != nil {
				t.Fatal(err)
			}
			if d := v.Time().Sub(before); d < -time.Second || d > time.Second {
				t.Fatalf("the next write is stamped %v, %v away from now", v.Time(), d)
			}
			// The forged record comes again (as anti-entropy would send it):
			// still refused, the acknowledged write stays.
			if err := peer.Replicate(tctx(t), []*wire.Record{forged}); err != nil {
				t.Fatal(err)
			}
			r, err := c.Get("cfg/k")
			if err != nil || string(r.Value) != "acknowledged" || r.Version != v {
				t.Fatalf("cfg/k = %+v, %v; want the acknowledged write", r, err)
			}
			if n := metric(t, c, "clock_refused_total", "source", "peer"); n != 2 {
				t.Fatalf(`clock_refused_total{source="peer"} = %v, want 2`, n)
			}
		})
	}
}

func TestHLCSaturatesInsteadOfWrapping(t *testing.T) {
	c := newHLC(nil)
	c.Observe(math.MaxUint64 - 1)
	if a, b := c.Now(), c.Now(); a != math.MaxUint64 || b != math.MaxUint64 {
		t.Fatalf("readings %d, %d; want the clock to stay at its top", a, b)
	}
}

// TestProbesAreQuiet: a connection that closes before its hello (a health
// check, a port probe) is counted, not logged as a warning.
func TestProbesAreQuiet(t *testing.T) {
	var buf syncBuffer
	c := testCenter(t, Options{Options: center.Options{Insecure: true, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}})
	for range 5 {
		nc, err := net.Dial("tcp", c.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	eventually(t, 2*time.Second, "5 probes counted", func() bool { return metric(t, c, "probes_total") == 5 })
	if n := metric(t, c, "bad_frames_total"); n != 0 {
		t.Errorf("bad_frames_total = %v after probes, want 0", n)
	}
	if strings.Contains(buf.String(), "closing connection") {
		t.Errorf("probes logged warnings:\n%s", buf.String())
	}
}

// TestFramesAreCapped: before its hello a connection may send a few KiB;
// a client, 1 MiB; only the peer sends up to MaxFrame. The others are told
// and closed, instead of the center allocating what they declare.
func TestFramesAreCapped(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Token: "t"}})
	r := rawDial(t, c.Addr().String())
	r.sendRaw([]byte{0, 0x40, 0, 0}) // declares 4 MiB before any hello
	r.expectErrorThenClose(wire.CodeTooLarge)

	r = rawDial(t, c.Addr().String())
	r.hello(wire.RoleAgent, "")
	r.sendRaw([]byte{0, 0x20, 0, 0}) // 2 MiB from an unauthenticated agent
	r.expectErrorThenClose(wire.CodeTooLarge)

	r = rawDial(t, c.Addr().String())
	r.hello(wire.RoleAdmin, "t")
	r.sendRaw([]byte{0, 0x20, 0, 0}) // 2 MiB from an authenticated writer
	r.expectErrorThenClose(wire.CodeTooLarge)

	r = rawDial(t, c.Addr().String())
	r.hello(wire.RoleAdmin, "t")
	r.send(wire.MsgPut, 2, &wire.PutMsg{Key: "cfg/big", Value: bytes.Repeat([]byte("v"), wire.MaxValueLen)})
	if f, err := r.recv(); err != nil || f.Type != wire.MsgOK {
		t.Fatalf("an authenticated writer's largest put: %+v %v", f, err)
	}

	r = rawDial(t, c.Addr().String())
	r.send(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: wire.RolePeer, Token: "t", CenterID: "c-other"})
	if f, err := r.recv(); err != nil || f.Type != wire.MsgWelcome {
		t.Fatalf("peer hello: %+v %v", f, err)
	}
	recs := make([]*wire.Record, 40)
	for i := range recs {
		recs[i] = &wire.Record{Key: fmt.Sprintf("cfg/peer/%02d", i), Value: bytes.Repeat([]byte("p"), wire.MaxValueLen),
			Version: wire.Version{HLC: uint64(time.Now().UnixMilli()) << wire.HLCLogicalBits, Origin: "c-other"}}
	}
	r.send(wire.MsgReplicate, 2, &wire.RecordsOut{Records: recs}) // 2.6 MB: only a peer may
	if f, err := r.recv(); err != nil || f.Type != wire.MsgOK {
		t.Fatalf("the peer's large batch: %+v %v", f, err)
	}
}

func TestConnectionAndSubscriptionLimits(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, MaxConnsPerAddr: 3, MaxSubscriptions: 2}})
	var conns []*registry.Conn
	for range 3 {
		conns = append(conns, dialT(t, c.Addr().String(), registry.DialOptions{}))
	}
	_, err := registry.Dial(tctx(t), c.Addr().String(), registry.DialOptions{})
	if !errors.Is(err, wire.ErrOverloaded) || !strings.Contains(err.Error(), "too many connections from one address") {
		t.Fatalf("a 4th connection from one address: %v", err)
	}
	if n := metric(t, c, "connections_refused_total", "reason", "per_addr"); n != 1 {
		t.Fatalf(`connections_refused_total{reason="per_addr"} = %v, want 1`, n)
	}
	conns[0].Close()
	eventually(t, 2*time.Second, "a slot frees when a connection closes", func() bool {
		conn, err := registry.Dial(tctx(t), c.Addr().String(), registry.DialOptions{})
		if err == nil {
			conn.Close()
		}
		return err == nil
	})

	conn := conns[1]
	for i := range 2 {
		if _, err := conn.Subscribe(tctx(t), []string{fmt.Sprint("cfg/", i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Subscribe(tctx(t), []string{""}, 0); !errors.Is(err, wire.ErrOverloaded) {
		t.Fatalf("a 3rd subscription on one connection: %v", err)
	}
	if err := conn.Ping(tctx(t)); err != nil {
		t.Fatalf("the connection should survive a refused subscription: %v", err)
	}
}

// TestDeleteFenceBeatsALateRegistration: an instance registered on B, whose
// replication to A is delayed, is deregistered on A (the client failed
// over). A does not hold it, answers not_found, and leaves a tombstone just
// past what the client had seen: when the registration arrives it loses,
// on both centers, instead of living until its TTL.
func TestDeleteFenceBeatsALateRegistration(t *testing.T) {
	a, b, pa, pb := startPair(t)
	pa.Cut()
	pb.Cut()
	eventually(t, 3*time.Second, "links down", func() bool { return !a.PeerConnected() && !b.PeerConnected() })

	// The client registers on B, then deletes through A, carrying the
	// version it was answered with (as registry.Client does).
	toB := dialT(t, b.Addr().String(), registry.DialOptions{Role: wire.RoleInstance})
	ctx := tctx(t)
	in := wire.Instance{Service: "web", ID: "w1", Address: "10.0.0.1", Port: 80, TTL: time.Hour}
	reg, err := toB.Register(ctx, in, registry.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ok := rawWrite(t, a.Addr().String(), wire.MsgDelete, &wire.KeyMsg{Key: in.Key(), After: reg.HLC})
	if !ok.NotFound || !reg.Less(ok.Version) {
		t.Fatalf("delete on the center that does not hold it: %+v; want not_found with a fence above %v", ok, reg)
	}

	pa.Heal()
	pb.Heal()
	eventually(t, 5*time.Second, "convergence", func() bool { return sameRecords(a, b) })
	for _, c := range []*Center{a, b} {
		if _, err := c.Get(in.Key()); !errors.Is(err, wire.ErrNotFound) {
			t.Fatalf("%s still holds the deregistered instance: %v", c.ID(), err)
		}
	}
}

// TestDeleteFenceSparesOthersWrites: the fence is stamped past the deleting
// client's after, not the center's clock, so a write the client never saw
// (newer than anything it saw) survives it.
func TestDeleteFenceSparesOthersWrites(t *testing.T) {
	a, b, pa, pb := startPair(t)
	pa.Cut()
	pb.Cut()
	eventually(t, 3*time.Second, "links down", func() bool { return !a.PeerConnected() && !b.PeerConnected() })
	ctx := tctx(t)
	deleter := dialT(t, a.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	if _, err := deleter.Put(ctx, "cfg/seen", []byte("x")); err != nil { // gives it an after
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the other client's write is later by the wall clock
	other := dialT(t, b.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	vOther, err := other.Put(ctx, "cfg/k", []byte("theirs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deleter.Delete(ctx, "cfg/k"); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("delete: %v", err)
	}
	pa.Heal()
	pb.Heal()
	eventually(t, 5*time.Second, "convergence", func() bool { return sameRecords(a, b) })
	for _, c := range []*Center{a, b} {
		r, err := c.Get("cfg/k")
		if err != nil || r.Version != vOther {
			t.Fatalf("%s: cfg/k = %+v, %v; the other client's write should survive", c.ID(), r, err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRetriedWriteKeepsTheClientsOrder replays the pair race of issue 13:
// a client's put reaches A (stamped t1) but the answer is lost; the client
// retries it on B, whose clock is behind, and B stamps the retry t0 < t1;
// the client's next put, on B, is stamped between the two. When A's first
// attempt arrives at B it must not win over the client's later write.
func TestRetriedWriteKeepsTheClientsOrder(t *testing.T) {
	pa, pb := newFaultProxy(t, ""), newFaultProxy(t, "")
	a := testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: t.TempDir(), Peer: pb.addr()})
	b := testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: t.TempDir(), Peer: pa.addr()}, func(c *Center) {
		c.backend.clock = newHLC(func() time.Time { return time.Now().Add(-2 * time.Second) }) // B's clock is behind
	})
	pa.setTarget(a.Addr().String())
	pb.setTarget(b.Addr().String())
	pa.Cut()
	pb.Cut()
	eventually(t, 3*time.Second, "links down", func() bool { return !a.PeerConnected() && !b.PeerConnected() })
	ctx := tctx(t)
	toB := dialT(t, b.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	wid := wire.NewWID()
	put := &wire.PutMsg{Key: "cfg/k", Value: []byte("v1"), WID: wid}
	first := rawWrite(t, a.Addr().String(), wire.MsgPut, put).Version // its answer is the one "lost"
	retry := rawWrite(t, b.Addr().String(), wire.MsgPut, put).Version
	later, err := toB.Put(ctx, "cfg/k", []byte("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if !retry.Less(first) || !later.Less(first) {
		t.Fatalf("the race needs B's stamps below A's: first %v, retry %v, later %v", first, retry, later)
	}
	// A retry of a write the center already holds is the same write.
	if again := rawWrite(t, b.Addr().String(), wire.MsgPut, put).Version; again != retry {
		t.Fatalf("a second retry on B: %v; want the retry's version %v", again, retry)
	}

	pa.Heal()
	pb.Heal()
	eventually(t, 5*time.Second, "convergence", func() bool { return sameRecords(a, b) })
	for _, c := range []*Center{a, b} {
		r, err := c.Get("cfg/k")
		if err != nil || string(r.Value) != "v2" {
			t.Fatalf("%s: cfg/k = %+v, %v; the client's later write was lost", c.ID(), r, err)
		}
	}
}

// rawWrite sends one write frame as an admin on a connection of its own
// and returns the ok it is answered with.
func rawWrite(t *testing.T, addr string, typ wire.MsgType, body any) wire.OKMsg {
	t.Helper()
	r := rawDial(t, addr)
	r.hello(wire.RoleAdmin, "")
	r.send(typ, 2, body)
	f, err := r.recv()
	if err != nil || f.Type != wire.MsgOK {
		t.Fatalf("write: %+v %v", f, err)
	}
	var ok wire.OKMsg
	if err := wire.DecodeBody(f.Body, &ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

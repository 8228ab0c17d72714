package pair

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// rawConn speaks the wire protocol by hand, to send what no client would.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, addr string) *rawConn {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) sendRaw(b []byte) {
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) send(typ wire.MsgType, id uint64, body any) {
	b, err := wire.EncodeFrame(typ, id, body)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendRaw(b)
}

func (r *rawConn) recv() (wire.Frame, error) {
	p, err := wire.ReadFrame(r.br, wire.DefaultMaxFrame)
	if err != nil {
		return wire.Frame{}, err
	}
	return wire.DecodeFrame(p)
}

func (r *rawConn) hello(role wire.Role, token string) {
	r.send(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: role, Token: token})
	f, err := r.recv()
	if err != nil || f.Type != wire.MsgWelcome {
		r.t.Fatalf("handshake: %+v %v", f, err)
	}
}

// expectErrorThenClose reads an error frame with the given code, then EOF.
func (r *rawConn) expectErrorThenClose(code string) {
	r.t.Helper()
	f, err := r.recv()
	if err != nil {
		r.t.Fatalf("want an error frame, got %v", err)
	}
	if f.Type != wire.MsgError {
		r.t.Fatalf("want an error frame, got type %d", f.Type)
	}
	var m wire.ErrorMsg
	if err := wire.DecodeBody(f.Body, &m); err != nil {
		r.t.Fatal(err)
	}
	if m.Code != code {
		r.t.Fatalf("error code %q (%s), want %q", m.Code, m.Message, code)
	}
	if _, err := r.recv(); err == nil {
		r.t.Fatal("connection still open after a fatal error")
	}
}

func lengthPrefixed(payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	return b
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Token: "s3cret", MaxFrame: 256 << 10}})
	addr := c.Addr().String()
	ctx := tctx(t)
	good := dialT(t, addr, registry.DialOptions{Role: wire.RoleAdmin, Token: "s3cret"})
	if _, err := good.Put(ctx, "cfg/k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		run  func(r *rawConn)
		code string
	}{
		{"garbage payload", func(r *rawConn) { r.sendRaw(lengthPrefixed([]byte{0xc1, 0xff, 0x00})) }, wire.CodeProtocol},
		{"empty frame", func(r *rawConn) { r.sendRaw([]byte{0, 0, 0, 0}) }, wire.CodeProtocol},
		{"oversized frame", func(r *rawConn) { r.sendRaw([]byte{0x7f, 0xff, 0xff, 0xff}) }, wire.CodeTooLarge},
		{"first frame not hello", func(r *rawConn) { r.send(wire.MsgPing, 1, nil) }, wire.CodeProtocol},
		{"unsupported version", func(r *rawConn) {
			r.send(wire.MsgHello, 1, &wire.HelloMsg{Version: 99, Role: wire.RoleAdmin, Token: "s3cret"})
		}, wire.CodeProtocol},
		{"unknown role", func(r *rawConn) { r.send(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: "god"}) }, wire.CodeInvalid},
		{"wrong token", func(r *rawConn) {
			r.send(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: wire.RoleAdmin, Token: "nope"})
		}, wire.CodeUnauthorized},
		{"instance without token", func(r *rawConn) {
			r.send(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: wire.RoleInstance})
		}, wire.CodeUnauthorized},
		{"agent without token writes", func(r *rawConn) {
			r.hello(wire.RoleAgent, "")
			r.send(wire.MsgPut, 2, &wire.PutMsg{Key: "cfg/x", Value: []byte("v")})
		}, wire.CodeUnauthorized},
		{"non-peer uses a peer operation", func(r *rawConn) {
			r.hello(wire.RoleAdmin, "s3cret")
			r.send(wire.MsgReplicate, 2, &wire.RecordsMsg{Records: []wire.Record{{Key: "cfg/x", Version: wire.Version{HLC: 1, Origin: "z"}}}})
		}, wire.CodeUnauthorized},
		{"body of the wrong shape", func(r *rawConn) {
			r.hello(wire.RoleAdmin, "s3cret")
			r.send(wire.MsgPut, 2, []int{1, 2, 3})
		}, wire.CodeProtocol},
		{"unknown frame type", func(r *rawConn) {
			r.hello(wire.RoleAdmin, "s3cret")
			r.sendRaw(lengthPrefixed([]byte{0x93, 0x7f, 0x02, 0xc0}))
		}, wire.CodeProtocol},
		{"trailing bytes", func(r *rawConn) {
			r.hello(wire.RoleAdmin, "s3cret")
			b, _ := wire.EncodeFrame(wire.MsgPing, 2, nil)
			r.sendRaw(lengthPrefixed(append(b[4:], 0x01)))
		}, wire.CodeProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, addr)
			r.t = t
			tc.run(r)
			r.expectErrorThenClose(tc.code)
			// The center keeps serving the others.
			if _, err := good.Get(ctx, "cfg/k"); err != nil {
				t.Fatalf("good connection broken: %v", err)
			}
		})
	}
}

func TestRequestErrorsKeepTheConnection(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	conn := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	ctx := tctx(t)
	// The SDK checks limits before sending; a hand-built request checks the
	// center's own validation.
	r := rawDial(t, c.Addr().String())
	r.hello(wire.RoleAdmin, "")
	big := make([]byte, wire.MaxValueLen+1)
	for _, tc := range []struct {
		body any
		typ  wire.MsgType
		code string
	}{
		{&wire.PutMsg{Key: "cfg/big", Value: big}, wire.MsgPut, wire.CodeTooLarge},
		{&wire.PutMsg{Key: strings.Repeat("k", wire.MaxKeyLen+1), Value: nil}, wire.MsgPut, wire.CodeTooLarge},
		{&wire.PutMsg{Key: "", Value: nil}, wire.MsgPut, wire.CodeInvalid},
		{&wire.PutMsg{Key: "svc/a/b", Value: nil}, wire.MsgPut, wire.CodeInvalid},
		{&wire.RegisterMsg{Instance: wire.Instance{Service: "a"}}, wire.MsgRegister, wire.CodeInvalid},
		// Control characters in keys (a tab or a newline would break
		// every "key<TAB>value" line a tool prints).
		{&wire.PutMsg{Key: "cfg/a\tb", Value: []byte("v")}, wire.MsgPut, wire.CodeInvalid},
		{&wire.PutMsg{Key: "cfg/a\nb", Value: []byte("v")}, wire.MsgPut, wire.CodeInvalid},
		{&wire.PutMsg{Key: "cfg/a\x7f", Value: []byte("v")}, wire.MsgPut, wire.CodeInvalid},
		{&wire.RegisterMsg{Instance: wire.Instance{Service: "web", ID: "a\tb", TTL: time.Second, Health: wire.HealthPassing, Weight: 1}}, wire.MsgRegister, wire.CodeInvalid},
		{&wire.KeyMsg{Key: "cfg/none"}, wire.MsgGet, wire.CodeNotFound},
	} {
		r.send(tc.typ, 7, tc.body)
		f, err := r.recv()
		if err != nil || f.Type != wire.MsgError || f.ID != 7 {
			t.Fatalf("%T: %+v %v", tc.body, f, err)
		}
		var m wire.ErrorMsg
		wire.DecodeBody(f.Body, &m)
		if m.Code != tc.code {
			t.Fatalf("%T: code %q (%s), want %q", tc.body, m.Code, m.Message, tc.code)
		}
	}
	r.send(wire.MsgPing, 8, nil)
	if f, err := r.recv(); err != nil || f.Type != wire.MsgPong || f.ID != 8 {
		t.Fatalf("connection not usable after request errors: %+v %v", f, err)
	}
	// And the SDK reports the sentinels before sending.
	if _, err := conn.Put(ctx, "cfg/big", big); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("sdk: %v", err)
	}
	if _, err := conn.Get(ctx, "cfg/none"); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("sdk get: %v", err)
	}
	if _, err := conn.Put(ctx, "cfg/a\tb", []byte("v")); !errors.Is(err, wire.ErrInvalid) {
		t.Fatalf("sdk put of a key with a tab: %v", err)
	}
}

func TestPeerRoleNeedsToken(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Token: "t"}})
	_, err := registry.Dial(tctx(t), c.Addr().String(), registry.DialOptions{Role: wire.RolePeer})
	if !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("peer without token: %v", err)
	}
	// An agent may read without the token.
	ag := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	if _, err := ag.List(tctx(t), ""); err != nil {
		t.Fatal(err)
	}
}

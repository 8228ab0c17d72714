package registry

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
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

func (r *rawConn) send(typ msgType, id uint64, body any) {
	b, err := encodeFrame(typ, id, body)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendRaw(b)
}

func (r *rawConn) recv() (frame, error) {
	p, err := readFrame(r.br, DefaultMaxFrame)
	if err != nil {
		return frame{}, err
	}
	return decodeFrame(p)
}

func (r *rawConn) hello(role Role, token string) {
	r.send(msgHello, 1, &helloMsg{Version: ProtocolVersion, Role: role, Token: token})
	f, err := r.recv()
	if err != nil || f.Type != msgWelcome {
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
	if f.Type != msgError {
		r.t.Fatalf("want an error frame, got type %d", f.Type)
	}
	var m errorMsg
	if err := decodeBody(f.Body, &m); err != nil {
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
	c := testCenter(t, CenterOptions{Token: "s3cret", MaxFrame: 256 << 10})
	addr := c.Addr().String()
	ctx := tctx(t)
	good := dialT(t, addr, DialOptions{Role: RoleAdmin, Token: "s3cret"})
	if _, err := good.Put(ctx, "cfg/k", []byte("v")); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		run  func(r *rawConn)
		code string
	}{
		{"garbage payload", func(r *rawConn) { r.sendRaw(lengthPrefixed([]byte{0xc1, 0xff, 0x00})) }, codeProtocol},
		{"empty frame", func(r *rawConn) { r.sendRaw([]byte{0, 0, 0, 0}) }, codeProtocol},
		{"oversized frame", func(r *rawConn) { r.sendRaw([]byte{0x7f, 0xff, 0xff, 0xff}) }, codeTooLarge},
		{"first frame not hello", func(r *rawConn) { r.send(msgPing, 1, nil) }, codeProtocol},
		{"unsupported version", func(r *rawConn) {
			r.send(msgHello, 1, &helloMsg{Version: 99, Role: RoleAdmin, Token: "s3cret"})
		}, codeProtocol},
		{"unknown role", func(r *rawConn) { r.send(msgHello, 1, &helloMsg{Version: ProtocolVersion, Role: "god"}) }, codeInvalid},
		{"wrong token", func(r *rawConn) {
			r.send(msgHello, 1, &helloMsg{Version: ProtocolVersion, Role: RoleAdmin, Token: "nope"})
		}, codeUnauthorized},
		{"instance without token", func(r *rawConn) {
			r.send(msgHello, 1, &helloMsg{Version: ProtocolVersion, Role: RoleInstance})
		}, codeUnauthorized},
		{"agent without token writes", func(r *rawConn) {
			r.hello(RoleAgent, "")
			r.send(msgPut, 2, &putMsg{Key: "cfg/x", Value: []byte("v")})
		}, codeUnauthorized},
		{"non-peer uses a peer operation", func(r *rawConn) {
			r.hello(RoleAdmin, "s3cret")
			r.send(msgReplicate, 2, &recordsMsg{Records: []Record{{Key: "cfg/x", Version: Version{HLC: 1, Origin: "z"}}}})
		}, codeUnauthorized},
		{"body of the wrong shape", func(r *rawConn) {
			r.hello(RoleAdmin, "s3cret")
			r.send(msgPut, 2, []int{1, 2, 3})
		}, codeProtocol},
		{"unknown frame type", func(r *rawConn) {
			r.hello(RoleAdmin, "s3cret")
			r.sendRaw(lengthPrefixed([]byte{0x93, 0x7f, 0x02, 0xc0}))
		}, codeProtocol},
		{"trailing bytes", func(r *rawConn) {
			r.hello(RoleAdmin, "s3cret")
			b, _ := encodeFrame(msgPing, 2, nil)
			r.sendRaw(lengthPrefixed(append(b[4:], 0x01)))
		}, codeProtocol},
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
	c := testCenter(t, CenterOptions{Insecure: true})
	conn := dialT(t, c.Addr().String(), DialOptions{Role: RoleAdmin})
	ctx := tctx(t)
	// The SDK checks limits before sending; a hand-built request checks the
	// center's own validation.
	r := rawDial(t, c.Addr().String())
	r.hello(RoleAdmin, "")
	big := make([]byte, MaxValueLen+1)
	for _, tc := range []struct {
		body any
		typ  msgType
		code string
	}{
		{&putMsg{Key: "cfg/big", Value: big}, msgPut, codeTooLarge},
		{&putMsg{Key: strings.Repeat("k", MaxKeyLen+1), Value: nil}, msgPut, codeTooLarge},
		{&putMsg{Key: "", Value: nil}, msgPut, codeInvalid},
		{&putMsg{Key: "svc/a/b", Value: nil}, msgPut, codeInvalid},
		{&registerMsg{Instance: Instance{Service: "a"}}, msgRegister, codeInvalid},
		{&keyMsg{Key: "cfg/none"}, msgGet, codeNotFound},
	} {
		r.send(tc.typ, 7, tc.body)
		f, err := r.recv()
		if err != nil || f.Type != msgError || f.ID != 7 {
			t.Fatalf("%T: %+v %v", tc.body, f, err)
		}
		var m errorMsg
		decodeBody(f.Body, &m)
		if m.Code != tc.code {
			t.Fatalf("%T: code %q (%s), want %q", tc.body, m.Code, m.Message, tc.code)
		}
	}
	r.send(msgPing, 8, nil)
	if f, err := r.recv(); err != nil || f.Type != msgPong || f.ID != 8 {
		t.Fatalf("connection not usable after request errors: %+v %v", f, err)
	}
	// And the SDK reports the sentinels before sending.
	if _, err := conn.Put(ctx, "cfg/big", big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("sdk: %v", err)
	}
	if _, err := conn.Get(ctx, "cfg/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("sdk get: %v", err)
	}
}

func TestPeerRoleNeedsToken(t *testing.T) {
	c := testCenter(t, CenterOptions{Token: "t"})
	_, err := Dial(tctx(t), c.Addr().String(), DialOptions{Role: RolePeer})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("peer without token: %v", err)
	}
	// An agent may read without the token.
	ag := dialT(t, c.Addr().String(), DialOptions{Role: RoleAgent})
	if _, err := ag.List(tctx(t), ""); err != nil {
		t.Fatal(err)
	}
}

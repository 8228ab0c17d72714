package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/pair"
)

// controlClient speaks the control protocol.
type controlClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialControl(t *testing.T, path string) *controlClient {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &controlClient{c: c, br: bufio.NewReader(c)}
}

func (cc *controlClient) do(t *testing.T, line string) Response {
	t.Helper()
	if _, err := cc.c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	cc.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := cc.br.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var r Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response %q: %v", b, err)
	}
	return r
}

// TestControlSocket exercises every operation of the control protocol.
func TestControlSocket(t *testing.T) {
	ca, cb := testPair(t)
	dir := t.TempDir()
	opts := testOptions(dir, []string{ca.Addr().String(), cb.Addr().String()}, "svc/")
	opts.Control = filepath.Join(dir, "agent.sock")
	a := startAgent(t, opts)
	fi, err := os.Stat(opts.Control)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	cc := dialControl(t, opts.Control)
	path := a.Status().Region
	eventually(t, "connected", func() error {
		if !a.Status().Connected {
			return errors.New("not connected")
		}
		return nil
	})

	r := cc.do(t, `{"op":"status"}`)
	if !r.OK || r.Status == nil || r.Status.Region != path || len(r.Status.Prefixes) != 1 {
		t.Fatalf("status: %+v", r)
	}

	// register: the agent registers and heartbeats; the instance reaches
	// the region through the center.
	r = cc.do(t, `{"op":"register","instance":{"service":"local","id":"p1","address":"127.0.0.1","port":7000},"ttl_ms":300}`)
	if !r.OK {
		t.Fatalf("register: %+v", r)
	}
	key := registry.InstanceKey("local", "p1")
	eventually(t, "registered instance in the region", func() error {
		if _, ok := regionContents(t, path)[key]; !ok {
			return errors.New("absent")
		}
		return nil
	})
	time.Sleep(600 * time.Millisecond) // two TTLs: the agent's heartbeats keep it
	if _, ok := regionContents(t, path)[key]; !ok {
		t.Fatal("registered instance expired: the agent did not heartbeat it")
	}

	// subscribe: replies once the region holds the new prefix.
	admin := dialAdmin(t, ca.Addr().String())
	if _, err := admin.Put(context.Background(), "cfg/x/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	r = cc.do(t, `{"op":"subscribe","prefixes":["cfg/x/"]}`)
	if !r.OK {
		t.Fatalf("subscribe: %+v", r)
	}
	if got := regionContents(t, path)["cfg/x/a"]; got != "1" {
		t.Fatalf("after subscribe, cfg/x/a = %q", got)
	}

	// refresh: a damaged entry is rewritten from the center.
	if err := a.w.Put([]byte("cfg/x/a"), []byte("damaged")); err != nil {
		t.Fatal(err)
	}
	r = cc.do(t, `{"op":"refresh","key":"cfg/x/a"}`)
	if !r.OK {
		t.Fatalf("refresh: %+v", r)
	}
	if got := regionContents(t, path)["cfg/x/a"]; got != "1" {
		t.Fatalf("after refresh, cfg/x/a = %q", got)
	}
	// ... and a key the center no longer has is deleted.
	if err := a.w.Put([]byte("cfg/x/ghost"), []byte("stale")); err != nil {
		t.Fatal(err)
	}
	if r = cc.do(t, `{"op":"refresh","key":"cfg/x/ghost"}`); !r.OK {
		t.Fatalf("refresh ghost: %+v", r)
	}
	if _, ok := regionContents(t, path)["cfg/x/ghost"]; ok {
		t.Fatal("refresh of a key the center lacks did not delete it")
	}
	if r = cc.do(t, `{"op":"refresh","key":"elsewhere/k"}`); r.OK {
		t.Fatal("refresh outside the subscription accepted")
	}

	// deregister
	if r = cc.do(t, `{"op":"deregister","service":"local","id":"p1"}`); !r.OK {
		t.Fatalf("deregister: %+v", r)
	}
	eventually(t, "deregistered instance gone", func() error {
		if _, ok := regionContents(t, path)[key]; ok {
			return errors.New("still there")
		}
		return nil
	})

	// errors
	for _, bad := range []string{`{"op":"nope"}`, `not json`, `{"op":"register"}`, `{"op":"subscribe","prefixes":[]}`} {
		if r := cc.do(t, bad); r.OK || r.Error == "" {
			t.Errorf("%s: %+v", bad, r)
		}
	}
	if r := cc.do(t, `{"op":"status"}`); !r.OK {
		t.Fatal("connection unusable after bad requests")
	}
	// The subscription is remembered beside the region.
	st, err := loadState(statePath(path))
	if err != nil || len(st.Dynamic) != 1 || st.Dynamic[0] != "cfg/x/" {
		t.Fatalf("state %+v, %v", st, err)
	}
}

// TestControlPeerCheck: a uid outside the allow-list is refused.
func TestControlPeerCheck(t *testing.T) {
	a := &Agent{opts: Options{ControlUIDs: []int{4242}}}
	for uid, want := range map[int]bool{0: true, os.Getuid(): true, 4242: true, 4243: os.Getuid() == 4243} {
		if got := a.allowed(uid); got != want {
			t.Errorf("allowed(%d) = %v, want %v", uid, got, want)
		}
	}
	// And the kernel reports our own uid for a connection we make.
	dir := t.TempDir()
	ln, err := listenControl(filepath.Join(dir, "s"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("unix", filepath.Join(dir, "s"))
		if err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, err := peerUID(c.(*net.UnixConn))
	if err != nil || uid != os.Getuid() {
		t.Fatalf("peer uid %d, %v; want %d", uid, err, os.Getuid())
	}
}

// FuzzDecodeRequest: the decoder never panics, and what it accepts is a
// known operation with its fields valid and re-encodes to an accepted line.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"status"}`,
		`{"op":"subscribe","prefixes":["cfg/x/"]}`,
		`{"op":"refresh","key":"svc/web/1"}`,
		`{"op":"register","instance":{"service":"s","id":"i","address":"a","port":1},"ttl_ms":1000}`,
		`{"op":"deregister","service":"s","id":"i"}`,
		`{"op":"status"} {"op":"status"}`,
		`{"op":"register","instance":null}`,
		`{"op":"refresh","key":""}`,
		`[]`, `{}`, `null`, "\x00", `{"op":"subscribe","prefixes":[""]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := DecodeRequest(line)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v does not wrap ErrBadRequest", err)
			}
			return
		}
		switch req.Op {
		case OpStatus, OpSubscribe, OpRefresh, OpRegister, OpDeregister:
		default:
			t.Fatalf("accepted unknown op %q", req.Op)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeRequest(again); err != nil {
			t.Fatalf("re-encoded %s refused: %v", again, err)
		}
	})
}

func ExampleDecodeRequest() {
	req, err := DecodeRequest([]byte(`{"op":"refresh","key":"svc/web/1"}`))
	fmt.Println(req.Op, req.Key, err)
	_, err = DecodeRequest([]byte(`{"op":"explode"}`))
	fmt.Println(err)
	// Output:
	// refresh svc/web/1 <nil>
	// agent: bad request: unknown op "explode"
}

// TestShutdownKeepsRegistrations: an agent that stops leaves the instances
// it registered for local processes to expire after their TTL (the next
// agent registers them again), unlike a service's own client, whose Close
// deregisters.
func TestShutdownKeepsRegistrations(t *testing.T) {
	ca, cb := testPair(t)
	dir := t.TempDir()
	a := startAgent(t, testOptions(dir, []string{ca.Addr().String(), cb.Addr().String()}, "svc/"))
	in := instance("local", "p1", 7000)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Register(ctx, in, time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the instance replicated", func() error { _, err := cb.Get(in.Key()); return err })
	stopAgent(t, a)
	time.Sleep(200 * time.Millisecond) // a late deregistration would have landed
	for _, c := range []*pair.Center{ca, cb} {
		if _, err := c.Get(in.Key()); err != nil {
			t.Errorf("the agent's shutdown deregistered the instance (center %s): %v", c.ID(), err)
		}
	}
}

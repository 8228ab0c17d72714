package pair

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// childCenter is a center running in a child process (this test binary,
// see TestMain).
type childCenter struct {
	cmd  *exec.Cmd
	addr string
	id   string
}

func startChild(t *testing.T, dataDir, listen, peer string, env ...string) *childCenter {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHMREG_TEST_CENTER=1", "SHMREG_DATA="+dataDir, "SHMREG_LISTEN="+listen, "SHMREG_PEER="+peer)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &childCenter{cmd: cmd}
	t.Cleanup(func() { ch.kill() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		for sc.Scan() {
		}
	}()
	select {
	case l, ok := <-line:
		var a, i string
		if _, err := fmt.Sscanf(l, "ADDR %s ID %s", &a, &i); !ok || err != nil {
			t.Fatalf("child center said %q: %v", l, err)
		}
		ch.addr, ch.id = a, i
	case <-time.After(10 * time.Second):
		t.Fatal("child center did not start")
	}
	return ch
}

func (c *childCenter) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

func (c *childCenter) terminate(t *testing.T) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child center did not exit cleanly on SIGTERM: %v", err)
	}
}

func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	child := startChild(t, dir, "127.0.0.1:0", "")
	conn, err := registry.Dial(tctx(t), child.addr, registry.DialOptions{Role: wire.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	ctx := tctx(t)
	want := map[string]string{}
	// Concurrent writers: every acknowledged write must survive.
	errc := make(chan error, 4)
	results := make(chan [2]string, 400)
	for w := range 4 {
		go func() {
			for i := range 100 {
				k, v := fmt.Sprintf("cfg/%d/%03d", w, i), fmt.Sprintf("v%d", i)
				if _, err := conn.Put(ctx, k, []byte(v)); err != nil {
					errc <- err
					return
				}
				results <- [2]string{k, v}
			}
			errc <- nil
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	close(results)
	for r := range results {
		want[r[0]] = r[1]
	}
	if _, err := conn.Register(ctx, inst("web", "1", time.Minute), registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Delete(ctx, "cfg/0/000"); err != nil {
		t.Fatal(err)
	}
	delete(want, "cfg/0/000")
	conn.Close()
	child.kill() // SIGKILL: no shutdown, no flush

	child2 := startChild(t, dir, "127.0.0.1:0", "")
	if child2.id != child.id {
		t.Fatalf("center id changed across restart: %s -> %s", child.id, child2.id)
	}
	conn2, err := registry.Dial(tctx(t), child2.addr, registry.DialOptions{Role: wire.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	got, err := conn2.List(ctx, "cfg/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("after SIGKILL: %d records, want %d", len(got), len(want))
	}
	for _, r := range got {
		if want[r.Key] != string(r.Value) {
			t.Fatalf("after SIGKILL: %s = %q, want %q", r.Key, r.Value, want[r.Key])
		}
	}
	if _, err := conn2.Get(ctx, "svc/web/1"); err != nil {
		t.Fatalf("registered instance lost: %v", err)
	}
	child2.terminate(t)
}

func TestTwoCenterProcessesConvergeAfterCut(t *testing.T) {
	pa := newFaultProxy(t, "") // to a
	pb := newFaultProxy(t, "") // to b
	a := startChild(t, t.TempDir(), "127.0.0.1:0", pb.addr())
	b := startChild(t, t.TempDir(), "127.0.0.1:0", pa.addr())
	pa.setTarget(a.addr)
	pb.setTarget(b.addr)
	ctx := tctx(t)
	ca := dialT(t, a.addr, registry.DialOptions{Role: wire.RoleAdmin})
	cb := dialT(t, b.addr, registry.DialOptions{Role: wire.RoleAdmin})

	// While connected, a write acknowledged by a shows up on b.
	if _, err := ca.Put(ctx, "cfg/first", []byte("1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "replication a->b", func() bool { _, err := cb.Get(ctx, "cfg/first"); return err == nil })

	pa.Cut()
	pb.Cut()
	for i := range 25 {
		if _, err := ca.Put(ctx, fmt.Sprintf("cfg/a/%02d", i), []byte("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := cb.Put(ctx, fmt.Sprintf("cfg/b/%02d", i), []byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cb.Delete(ctx, "cfg/first"); err != nil {
		t.Fatal(err)
	}
	pa.Heal()
	pb.Heal()
	dump := func(c *registry.Conn) string {
		rs, err := c.List(ctx, "")
		if err != nil {
			return "error: " + err.Error()
		}
		var sb strings.Builder
		for _, r := range rs {
			fmt.Fprintf(&sb, "%s=%s@%d/%s;", r.Key, r.Value, r.Version.HLC, r.Version.Origin)
		}
		return sb.String()
	}
	eventually(t, 10*time.Second, "convergence", func() bool {
		da := dump(ca)
		return da == dump(cb) && strings.Count(da, ";") == 50
	})
	if _, err := ca.Get(ctx, "cfg/first"); err == nil {
		t.Fatal("deleted key resurrected on a")
	}
	a.terminate(t)
	b.terminate(t)
}

// tmpfsChild is a center in a child process whose data directory is a
// small tmpfs of its own (in user and mount namespaces of its own, so the
// test needs no privileges and leaves no mount behind). The test fills and
// frees that file system through the child's stdin.
type tmpfsChild struct {
	*childCenter
	stdin io.WriteCloser
	lines chan string
}

func startChildOnTmpfs(t *testing.T, size, listen, peer string, env ...string) *tmpfsChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHMREG_TEST_CENTER=1", "SHMREG_DATA="+t.TempDir(), "SHMREG_TMPFS="+size,
		"SHMREG_LISTEN="+listen, "SHMREG_PEER="+peer)
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("this machine does not allow user namespaces, so no private tmpfs can be mounted: %v", err)
		}
		t.Fatal(err)
	}
	ch := &tmpfsChild{childCenter: &childCenter{cmd: cmd}, stdin: stdin, lines: make(chan string, 16)}
	t.Cleanup(func() { ch.kill() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
	}()
	l := ch.next(t)
	if _, err := fmt.Sscanf(l, "ADDR %s ID %s", &ch.addr, &ch.id); err != nil {
		t.Fatalf("child center said %q: %v", l, err)
	}
	return ch
}

func (c *tmpfsChild) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatal("child center exited")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("child center did not answer")
	}
	return ""
}

// do sends a command ("fill", "free") and waits for its answer.
func (c *tmpfsChild) do(t *testing.T, cmd, want string) {
	t.Helper()
	if _, err := fmt.Fprintln(c.stdin, cmd); err != nil {
		t.Fatal(err)
	}
	if l := c.next(t); l != want {
		t.Fatalf("%s: child said %q", cmd, l)
	}
}

// TestFailingStoreMakesEveryoneMove: center A's data directory fills up.
// A refuses writes with a retriable unavailable error, on which the SDK
// writes to B instead; once A has failed for UnhealthyAfter it closes its
// subscriptions and refuses new ones, so that agents follow B; and when
// space returns A persists again, serves again, and catches up with what
// B took meanwhile.
func TestFailingStoreMakesEveryoneMove(t *testing.T) {
	addrA, addrB := freeLoopbackAddr(t), freeLoopbackAddr(t)
	b := testCenter(t, Options{Options: center.Options{Insecure: true, Listen: addrB}, Peer: addrA, DataDir: t.TempDir()})
	a := startChildOnTmpfs(t, "8m", addrA, addrB, "SHMREG_UNHEALTHY_AFTER=300ms")
	ctx := tctx(t)

	agentConn := dialT(t, a.addr, registry.DialOptions{})
	sub, err := agentConn.Subscribe(ctx, []string{"cfg/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(ctx); err != nil { // the initial snapshot
		t.Fatal(err)
	}
	cl := testClient(t, registry.ClientOptions{Addrs: []string{a.addr, addrB}, Role: wire.RoleAdmin})
	if v, err := cl.Put(ctx, "cfg/before", []byte("1")); err != nil || v.Origin != a.id {
		t.Fatalf("put before the disk fills: %+v %v (want it on A, %s)", v, err, a.id)
	}

	a.do(t, "fill", "FILLED")
	value := bytes.Repeat([]byte("x"), wire.MaxValueLen)
	var moved wire.Version
	for i := 0; i < 50 && moved.IsZero(); i++ {
		v, err := cl.Put(ctx, fmt.Sprint("cfg/during/", i), value)
		if err != nil {
			t.Fatalf("put %d while A's disk is full: %v", i, err)
		}
		if v.Origin == b.ID() {
			moved = v
		}
	}
	if moved.IsZero() {
		t.Fatal("50 large puts and the client never moved to B")
	}

	// A's subscriptions end, with unavailable, and A takes no new one.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		_, err := sub.Next(sctx)
		if err == nil {
			continue
		}
		if !errors.Is(err, wire.ErrUnavailable) {
			t.Fatalf("A's subscription ended with %v, want unavailable", err)
		}
		break
	}
	probe := dialT(t, a.addr, registry.DialOptions{})
	if _, err := probe.Subscribe(ctx, []string{"cfg/"}, 0); !errors.Is(err, wire.ErrUnavailable) {
		t.Fatalf("a new subscription on A while it cannot persist: %v", err)
	}

	a.do(t, "free", "FREED")
	eventually(t, 10*time.Second, "A serves subscriptions again", func() bool {
		s, err := probe.Subscribe(ctx, []string{"cfg/"}, 0)
		if err != nil {
			return false
		}
		s.Close(ctx)
		return true
	})
	eventually(t, 10*time.Second, "A catches up with what B took", func() bool {
		r, err := probe.Get(ctx, fmt.Sprint("cfg/during/", 0))
		if err != nil {
			return false
		}
		rb, err := b.Get(r.Key)
		return err == nil && rb.Version == r.Version
	})
}

// freeLoopbackAddr returns a loopback address with a port nobody listens
// on (now).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

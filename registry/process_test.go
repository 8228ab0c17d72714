package registry

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
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
	conn, err := Dial(tctx(t), child.addr, DialOptions{Role: RoleAdmin})
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
	if _, err := conn.Register(ctx, inst("web", "1", time.Minute), RegisterOptions{}); err != nil {
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
	conn2, err := Dial(tctx(t), child2.addr, DialOptions{Role: RoleAdmin})
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
	ca := dialT(t, a.addr, DialOptions{Role: RoleAdmin})
	cb := dialT(t, b.addr, DialOptions{Role: RoleAdmin})

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
	dump := func(c *Conn) string {
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

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/center"
)

// The cross-process tests run each center in a child process: this test
// binary, started again with SHMREG_TEST_CLUSTER=1 (see runChild), so that
// a center can be SIGKILLed or SIGSTOPped like a real one.

func TestMain(m *testing.M) {
	if os.Getenv("SHMREG_TEST_CLUSTER") == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// Raft timings of the test clusters: short, so that an election takes
// well under a second.
const (
	testTickMs     = 50
	testElectionMs = 500
)

func runChild() int {
	env := os.Getenv
	level := slog.LevelInfo
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("center", env("CL_NAME"))
	opts := Options{
		Options: center.Options{Listen: "127.0.0.1:0", Insecure: true, Logger: logger,
			UnhealthyAfter: time.Second, KeepAlive: time.Second},
		Name:              env("CL_NAME"),
		DataDir:           env("CL_DATA"),
		PeerURL:           env("CL_PEER"),
		ClientURL:         env("CL_CLIENT"),
		InitialCluster:    env("CL_INITIAL"),
		Listener:          env("CL_LISTENER") == "1",
		TickMs:            testTickMs,
		ElectionMs:        testElectionMs,
		LeaseTTL:          3 * time.Second,
		WriteTimeout:      2 * time.Second,
		PromoteAfter:      2 * time.Second,
		SuperviseInterval: 300 * time.Millisecond,
	}
	if j := env("CL_JOIN"); j != "" {
		opts.Join = strings.Split(j, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c, err := New(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	fmt.Printf("ADDR %s ID %s\n", c.Addr(), c.ID())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "child: shutdown:", err)
		return 1
	}
	return 0
}

// freePort returns a loopback port nobody listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// node is a cluster center in a child process.
type node struct {
	name, peerURL, clientURL, dir string
	cmd                           *exec.Cmd
	addr, id                      string
}

func newNode(t testing.TB, name string) *node {
	return &node{name: name, dir: filepath.Join(t.TempDir(), name),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
}

// start starts n's child and returns a channel closed when it is serving
// (or has failed: then n.addr is empty).
func (n *node) start(t testing.TB, initial string, listener bool, join string) <-chan struct{} {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHMREG_TEST_CLUSTER=1", "CL_NAME="+n.name, "CL_DATA="+n.dir,
		"CL_PEER="+n.peerURL, "CL_CLIENT="+n.clientURL, "CL_INITIAL="+initial, "CL_JOIN="+join)
	if listener {
		cmd.Env = append(cmd.Env, "CL_LISTENER=1")
	}
	if os.Getenv("SHMREG_TEST_VERBOSE") != "" {
		cmd.Stderr = os.Stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd = cmd
	t.Cleanup(n.kill)
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			fmt.Sscanf(sc.Text(), "ADDR %s ID %s", &n.addr, &n.id)
		}
		go func() {
			for sc.Scan() {
			}
		}()
	}()
	return ready
}

func (n *node) kill() {
	if n.cmd != nil && n.cmd.ProcessState == nil {
		n.cmd.Process.Signal(syscall.SIGCONT)
		n.cmd.Process.Signal(syscall.SIGKILL)
		n.cmd.Wait()
	}
}

func (n *node) signal(s syscall.Signal) { n.cmd.Process.Signal(s) }

// testCluster is three voters and one listener on loopback.
type testCluster struct {
	voters   []*node
	listener *node
}

func startCluster(t testing.TB, withListener bool) *testCluster {
	t.Helper()
	tc := &testCluster{}
	var parts []string
	for i := range 3 {
		n := newNode(t, fmt.Sprintf("v%d", i+1))
		tc.voters = append(tc.voters, n)
		parts = append(parts, n.name+"="+n.peerURL)
	}
	initial := strings.Join(parts, ",")
	var readies []<-chan struct{}
	for _, n := range tc.voters {
		readies = append(readies, n.start(t, initial, false, ""))
	}
	for i, r := range readies {
		select {
		case <-r:
		case <-time.After(30 * time.Second):
			t.Fatalf("voter %s did not start", tc.voters[i].name)
		}
		if tc.voters[i].addr == "" {
			t.Fatalf("voter %s failed to start (SHMREG_TEST_VERBOSE=1 shows its log)", tc.voters[i].name)
		}
	}
	if withListener {
		l := newNode(t, "l1")
		select {
		case <-l.start(t, "", true, tc.voters[0].clientURL+","+tc.voters[1].clientURL):
		case <-time.After(30 * time.Second):
			t.Fatal("listener did not start")
		}
		if l.addr == "" {
			t.Fatal("listener failed to start (SHMREG_TEST_VERBOSE=1 shows its log)")
		}
		tc.listener = l
	}
	return tc
}

func (tc *testCluster) all() []*node {
	out := append([]*node(nil), tc.voters...)
	if tc.listener != nil {
		out = append(out, tc.listener)
	}
	return out
}

func tctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

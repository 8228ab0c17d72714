package agent

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// roleEnv selects the role of a child process of the cross-process tests
// (this test binary run again, see TestMain): "center", "agent" or
// "reader", configured by the SHMREG_T_* variables.
const roleEnv = "SHMREG_AGENT_TEST_ROLE"

func runChild(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch role {
	case "center":
		err = childCenter(ctx)
	case "agent":
		err = childAgent(ctx)
	case "reader":
		err = childReader(ctx)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, role+":", err)
		return 1
	}
	return 0
}

func childCenter(ctx context.Context) error {
	c, err := pair.New(pair.Options{Options: center.Options{Insecure: true, Listen: os.Getenv("SHMREG_T_LISTEN"), SweepInterval: 20 * time.Millisecond}, Peer: os.Getenv("SHMREG_T_PEER"), DataDir: os.Getenv("SHMREG_T_DATA"), TouchInterval: 50 * time.Millisecond, AntiEntropyInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	fmt.Printf("READY %s %s\n", c.Addr(), c.ID())
	<-ctx.Done()
	return c.Shutdown(context.Background())
}

func childAgent(ctx context.Context) error {
	dir := os.Getenv("SHMREG_T_DIR")
	if size := os.Getenv("SHMREG_T_TMPFS"); size != "" {
		// The child runs in a user and mount namespace of its own (see
		// spawnIn): the tmpfs is private to it and goes away with it.
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
			return fmt.Errorf("mount a %s tmpfs on %s: %w", size, dir, err)
		}
	}
	opts := testOptions(dir, strings.Split(os.Getenv("SHMREG_T_CENTERS"), ","), strings.Split(os.Getenv("SHMREG_T_PREFIXES"), ",")...)
	if s := os.Getenv("SHMREG_T_REGION_SIZE"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SHMREG_T_REGION_SIZE: %w", err)
		}
		opts.Shm.Size = n
	}
	opts.Control = os.Getenv("SHMREG_T_CONTROL")
	if os.Getenv("SHMREG_T_METRICS") != "" {
		opts.Metrics = "127.0.0.1:0"
	}
	a, err := New(opts)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	for a.Status().Batches == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if addr := a.MetricsAddr(); addr != nil {
		fmt.Println("READY", addr)
	} else {
		fmt.Println("READY")
	}
	<-ctx.Done()
	return a.Shutdown(context.Background())
}

// childReader scans its prefix in a loop and reports every key that went
// missing after it had been seen ("MISSING key"), and how many scans it has
// made ("SCANS n": every 20ms while it runs, so that a test can wait for
// progress, and once more at SIGTERM).
func childReader(ctx context.Context) error {
	r, err := shm.Open(os.Getenv("SHMREG_T_REGION"), shm.Options{})
	if err != nil {
		return err
	}
	defer r.Close()
	prefix := []byte(os.Getenv("SHMREG_T_PREFIXES"))
	seen := map[string]bool{}
	fmt.Println("READY")
	scans := 0
	reported := time.Now()
	for ctx.Err() == nil {
		now := map[string]bool{}
		if err := r.Scan(prefix, func(k, _ []byte) bool { now[string(k)] = true; return true }); err != nil {
			return err
		}
		for k := range seen {
			if !now[k] {
				fmt.Println("MISSING", k)
			}
		}
		seen = now
		scans++
		if time.Since(reported) >= 20*time.Millisecond {
			fmt.Println("SCANS", scans)
			reported = time.Now()
		}
	}
	fmt.Println("SCANS", scans)
	return nil
}

// child is a running child process and its stdout lines.
type child struct {
	cmd  *exec.Cmd
	eof  chan struct{} // closed once stdout is read to its end
	more chan struct{} // capacity 1: a line arrived
	mu   sync.Mutex
	all  []string
}

// spawn starts this test binary as a child in role and waits for its
// READY line.
func spawn(t *testing.T, role string, env ...string) *child {
	t.Helper()
	c, err := spawnIn(t, nil, role, env...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// spawnIn is spawn with process attributes (namespaces); it returns the
// error of starting the process, so that a test can tell a machine that
// refuses namespaces from a failure.
func spawnIn(t *testing.T, attr *syscall.SysProcAttr, role string, env ...string) (*child, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = attr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, eof: make(chan struct{}), more: make(chan struct{}, 1)}
	go func() {
		defer close(c.eof)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			c.all = append(c.all, sc.Text())
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { c.kill() })
	c.await(t, role+" child says READY", func(lines []string) bool { return len(lines) > 0 })
	if l := c.ready(); !strings.HasPrefix(l, "READY") {
		t.Fatalf("%s child said %q", role, l)
	}
	return c, nil
}

// await waits until cond holds for the lines the child has printed so far
// (at most 20s, and not past the child's exit).
func (c *child) await(t *testing.T, what string, cond func(lines []string) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		ok := cond(c.all)
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-c.more:
		case <-c.eof:
			c.mu.Lock()
			ok, out := cond(c.all), slices.Clone(c.all)
			c.mu.Unlock()
			if !ok {
				t.Fatalf("%s: the child exited first; it printed %q", what, out)
			}
			return
		case <-deadline:
			t.Fatalf("%s: not after 20s", what)
		}
	}
}

// lines returns a copy of what the child has printed so far.
func (c *child) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

func (c *child) ready() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all[0]
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// stop ends the child with SIGTERM and returns its output. The output is
// read to its end before Wait, which closes the pipe: a line the child
// printed as it exited would otherwise be lost.
func (c *child) stop(t *testing.T) []string {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.eof:
	case <-time.After(20 * time.Second):
		t.Errorf("child did not exit 20s after SIGTERM")
		c.cmd.Process.Kill()
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child exited: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all
}

// lastScans is the scan count of the reader's last SCANS report (0 before
// the first).
func lastScans(lines []string) int {
	n := 0
	for _, l := range lines {
		fmt.Sscanf(l, "SCANS %d", &n)
	}
	return n
}

// TestProcessesEndToEnd runs two centers, two agents with different
// subscriptions and a reader as separate processes on loopback.
func TestProcessesEndToEnd(t *testing.T) {
	dir := t.TempDir()
	addrA, addrB := freeAddr(t), freeAddr(t)
	centerA := spawn(t, "center", "SHMREG_T_LISTEN="+addrA, "SHMREG_T_PEER="+addrB, "SHMREG_T_DATA="+filepath.Join(dir, "a"))
	spawn(t, "center", "SHMREG_T_LISTEN="+addrB, "SHMREG_T_PEER="+addrA, "SHMREG_T_DATA="+filepath.Join(dir, "b"))
	centers := "SHMREG_T_CENTERS=" + addrA + "," + addrB
	dir1, dir2 := filepath.Join(dir, "host1"), filepath.Join(dir, "host2")
	region1, region2 := filepath.Join(dir1, "region"), filepath.Join(dir2, "region")
	agent1Env := []string{centers, "SHMREG_T_DIR=" + dir1, "SHMREG_T_PREFIXES=svc/web/"}
	agent1 := spawn(t, "agent", agent1Env...)
	spawn(t, "agent", centers, "SHMREG_T_DIR="+dir2, "SHMREG_T_PREFIXES=svc/api/,cfg/")

	ctx := context.Background()
	adminA := dialAdmin(t, addrA)
	adminB := dialAdmin(t, addrB)
	want1, want2 := map[string]string{}, map[string]string{}
	register := func(c *registry.Conn, in registry.Instance, want map[string]string) {
		t.Helper()
		if _, err := c.Register(ctx, in, registry.RegisterOptions{}); err != nil {
			t.Fatal(err)
		}
		if want != nil {
			want[in.Key()] = mustEncode(t, in)
		}
	}
	for i := range 8 {
		register(adminA, longLived("web", fmt.Sprint("w", i)), want1)
		register(adminA, longLived("api", fmt.Sprint("a", i)), want2)
	}
	if _, err := adminA.Put(ctx, "cfg/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	want2["cfg/x"] = "1"
	if _, err := adminA.Put(ctx, "other/y", []byte("not subscribed")); err != nil {
		t.Fatal(err)
	}
	// Two instances that expire (no heartbeat).
	for i := range 2 {
		in := instance("web", fmt.Sprint("short", i), 7000)
		in.TTL = 300 * time.Millisecond
		register(adminA, in, nil)
	}
	eventually(t, "region 1 holds exactly svc/web/", sameAs(t, region1, want1))
	eventually(t, "region 2 holds exactly svc/api/ and cfg/", sameAs(t, region2, want2))

	// Center A dies (once B holds what A acknowledged: the pair replicates
	// asynchronously); registrations continue at B; both agents converge.
	eventually(t, "B in sync with A", func() error {
		recs, err := adminB.List(ctx, "")
		if err != nil {
			return err
		}
		if n := len(recs); n != len(want1)+len(want2)+1 {
			return fmt.Errorf("B holds %d records", n)
		}
		return nil
	})
	centerA.kill()
	for i := 8; i < 12; i++ {
		register(adminB, longLived("web", fmt.Sprint("w", i)), want1)
		register(adminB, longLived("api", fmt.Sprint("a", i)), want2)
	}
	eventually(t, "region 1 converges after the failover", sameAs(t, region1, want1))
	eventually(t, "region 2 converges after the failover", sameAs(t, region2, want2))

	// A reader keeps reading region 1 while its agent is SIGKILLed mid-stream
	// and restarted; no entry it saw may go missing (nothing is deleted).
	reader := spawn(t, "reader", "SHMREG_T_REGION="+region1, "SHMREG_T_PREFIXES=svc/web/")
	var wg sync.WaitGroup
	stopWriting := make(chan struct{})
	writerDone := make(chan struct{})
	var mu sync.Mutex
	var written atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		for i := 100; ; i++ {
			select {
			case <-stopWriting:
				return
			default:
			}
			in := longLived("web", fmt.Sprint("w", i))
			if _, err := adminB.Register(ctx, in, registry.RegisterOptions{}); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			want1[in.Key()] = mustEncode(t, in)
			mu.Unlock()
			written.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	stopWriter := sync.OnceFunc(func() { close(stopWriting); wg.Wait() })
	defer stopWriter()
	// Each step waits for evidence that the writer and the reader made
	// progress, not for a fixed time, so that a loaded machine only makes
	// the test slower.
	moreWrites := func(what string) {
		t.Helper()
		n := written.Load() + 10
		eventually(t, what, func() error {
			select {
			case <-writerDone:
				t.Fatalf("%s: the writer stopped", what)
			default:
			}
			if w := written.Load(); w < n {
				return fmt.Errorf("%d registrations, want %d", w, n)
			}
			return nil
		})
	}
	reader.await(t, "the reader reports its first scans", func(l []string) bool { return lastScans(l) > 0 })
	moreWrites("registrations before the kill")
	agent1.kill() // SIGKILL
	moreWrites("registrations while the agent is down")
	spawn(t, "agent", agent1Env...) // READY: its first batch is applied
	before := lastScans(reader.lines())
	reader.await(t, "the reader scans on after the restart", func(l []string) bool { return lastScans(l) >= before+10 })
	moreWrites("registrations after the restart")
	stopWriter()
	eventually(t, "region 1 caught up after the restart", sameAs(t, region1, want1))
	out := reader.stop(t)
	scans := 0
	for _, l := range out {
		if strings.HasPrefix(l, "MISSING") {
			t.Errorf("reader saw an entry go missing: %s", l)
		}
		fmt.Sscanf(l, "SCANS %d", &scans)
	}
	if scans < 10 {
		t.Errorf("reader made only %d scans: %q", scans, out)
	}
	t.Logf("reader made %d scans over the restart; region 1 holds %d entries", scans, len(want1))
}

func longLived(service, id string) registry.Instance {
	in := instance(service, id, 8000)
	in.TTL = time.Hour
	return in
}

package pair

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// TestMain doubles as the center child process of the cross-process tests:
// with SHMREG_TEST_CENTER=1 the test binary runs one center (configured by
// the environment), prints "ADDR <addr> ID <id>" on stdout, and serves until
// SIGTERM (or until it is SIGKILLed).
func TestMain(m *testing.M) {
	if os.Getenv("SHMREG_TEST_CENTER") == "1" {
		os.Exit(runChildCenter())
	}
	goleak.VerifyTestMain(m)
}

func runChildCenter() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if size := os.Getenv("SHMREG_TMPFS"); size != "" {
		// A small file system of the child's own (it runs in user and mount
		// namespaces of its own, see startChildOnTmpfs).
		if err := unix.Mount("tmpfs", os.Getenv("SHMREG_DATA"), "tmpfs", 0, "size="+size); err != nil {
			fmt.Fprintln(os.Stderr, "child center: mount tmpfs:", err)
			return 1
		}
		go fillCommands(os.Getenv("SHMREG_DATA"))
	}
	unhealthyAfter, _ := time.ParseDuration(os.Getenv("SHMREG_UNHEALTHY_AFTER"))
	c, err := New(Options{Options: center.Options{UnhealthyAfter: unhealthyAfter, Insecure: true, Listen: os.Getenv("SHMREG_LISTEN")}, Peer: os.Getenv("SHMREG_PEER"), DataDir: os.Getenv("SHMREG_DATA"), AntiEntropyInterval: 300 * time.Millisecond, TouchInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child center:", err)
		return 1
	}
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child center:", err)
		return 1
	}
	fmt.Printf("ADDR %s ID %s\n", c.Addr(), c.ID())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "child center shutdown:", err)
		return 1
	}
	return 0
}

// fillCommands serves the test's commands on stdin: "fill" fills the
// file system under dir to the last byte, "free" frees it again; each is
// answered on stdout once done.
func fillCommands(dir string) {
	sc := bufio.NewScanner(os.Stdin)
	filler := filepath.Join(dir, "filler")
	for sc.Scan() {
		switch sc.Text() {
		case "fill":
			if f, err := os.Create(filler); err == nil {
				buf := make([]byte, 64<<10)
				for n := len(buf); n > 0; n /= 2 { // down to the last bytes
					for {
						if _, err := f.Write(buf[:n]); err != nil {
							break
						}
					}
				}
				f.Close()
			}
			fmt.Println("FILLED")
		case "free":
			os.Remove(filler)
			fmt.Println("FREED")
		}
	}
}

// testCenter starts an in-process center with fast timings for tests;
// setup, if given, runs between NewCenter and Start.
func testCenter(t testing.TB, opts Options, setup ...func(*Center)) *Center {
	t.Helper()
	if opts.SweepInterval == 0 {
		opts.SweepInterval = 20 * time.Millisecond
	}
	if opts.TouchInterval == 0 {
		opts.TouchInterval = 50 * time.Millisecond
	}
	if opts.AntiEntropyInterval == 0 {
		opts.AntiEntropyInterval = 200 * time.Millisecond
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(c)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return c
}

func dialT(t testing.TB, addr string, opts registry.DialOptions) *registry.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := registry.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func keysOf(recs []wire.Record) string {
	ks := make([]string, len(recs))
	for i, r := range recs {
		ks[i] = r.Key
	}
	return strings.Join(ks, ",")
}

// metric is the value of the center's metric shmreg_center_<name> (with
// the given label name/value pairs), gathered from its registry.
func metric(t testing.TB, c *Center, name string, labels ...string) float64 {
	t.Helper()
	g, ok := c.Options().Registerer.(prometheus.Gatherer)
	if !ok {
		t.Fatal("the center's metrics cannot be gathered")
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shmreg_center_"+name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}

// records returns every record, tombstones included, sorted by key (tests
// compare the two centers with it).
func (c *Center) records() []wire.Record {
	var out []wire.Record
	c.backend.Read(func(v center.View) {
		v.Scan(func(r *wire.Record) bool {
			out = append(out, *r)
			return true
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// testClient returns a registration client closed when the test ends.
func testClient(t *testing.T, opts registry.ClientOptions) *registry.Client {
	t.Helper()
	c, err := registry.NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

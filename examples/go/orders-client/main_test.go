package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// TestInterruptDeregisters runs the built example against an in-process
// center, as a user would, and interrupts it (SIGINT, what Ctrl-C sends)
// once it has registered: the instance must be gone from the center when
// the process has exited, not after its TTL. Twenty runs: the race this
// guards against was lost about one time in two.
func TestInterruptDeregisters(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example 20 times")
	}
	bin := filepath.Join(t.TempDir(), "orders-client")
	if out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c, err := pair.New(pair.Options{Options: center.Options{Insecure: true, Listen: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	region := filepath.Join(t.TempDir(), "region")
	w, err := shm.OpenWriter(region, shm.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	for i := range 20 {
		cmd := exec.Command(bin, "-centers", c.Addr().String(), "-region", region, "-listen", "127.0.0.1:0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var key string
		for deadline := time.Now().Add(10 * time.Second); key == "" && time.Now().Before(deadline); {
			if recs := c.List("svc/orders-client/"); len(recs) == 1 {
				key = recs[0].Key
			} else {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if key == "" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("run %d: the example did not register within 10s\n%s", i, stderr.String())
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		// The center makes the registration durable before it answers:
		// the signal may come while Register waits for the answer, and
		// the example then exits 1, but leaves no instance either.
		if err := cmd.Wait(); err != nil && !bytes.Contains(stderr.Bytes(), []byte("register: context canceled")) {
			t.Fatalf("run %d: %v\n%s", i, err, stderr.String())
		}
		if _, err := c.Get(key); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("run %d: %s is still registered after the example exited on SIGINT (err %v)\n%s", i, key, err, stderr.String())
		}
	}
	_ = os.Remove(region)
}

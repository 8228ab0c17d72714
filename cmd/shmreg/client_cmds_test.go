package main

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

// startCenter starts one center on loopback, in memory, shut down at the
// end of the test, and a connection to it for checking what the CLI did.
func startCenter(t *testing.T, token string) (*pair.Center, *registry.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, err := pair.New(pair.Options{Options: center.Options{Listen: "127.0.0.1:0", Token: token, Insecure: token == ""}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		c.Shutdown(sctx)
	})
	conn, err := registry.Dial(ctx, c.Addr().String(), registry.DialOptions{Role: registry.RoleAdmin, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, conn
}

func getT(t *testing.T, conn *registry.Conn, key string) (registry.Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return conn.Get(ctx, key)
}

func TestPutAndDelAgainstACenter(t *testing.T) {
	c, conn := startCenter(t, "")
	addr := c.Addr().String()

	r := runCLI(t, "put", "--centers", addr, "cfg/web/timeout", "250ms")
	r.wantExit(t, 0)
	if want := `^put cfg/web/timeout \(version \d+@` + regexp.QuoteMeta(c.ID()) + `\)\n$`; !regexp.MustCompile(want).MatchString(r.stdout) {
		t.Errorf("put printed %q, want %q", r.stdout, want)
	}
	rec, err := getT(t, conn, "cfg/web/timeout")
	if err != nil || string(rec.Value) != "250ms" {
		t.Fatalf("after put: %+v, %v", rec, err)
	}

	r = runCLI(t, "del", "--centers", addr, "cfg/web/timeout")
	r.wantExit(t, 0)
	if want := `^deleted cfg/web/timeout \(version \d+@` + regexp.QuoteMeta(c.ID()) + `\)\n$`; !regexp.MustCompile(want).MatchString(r.stdout) {
		t.Errorf("del printed %q, want %q", r.stdout, want)
	}
	if rec, err := getT(t, conn, "cfg/web/timeout"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after del: %+v, %v", rec, err)
	}

	// Wrong number of arguments: the usage, and a message naming them
	// (exit 2: shmreg could not tell what to do).
	r = runCLI(t, "put", "--centers", addr, "only-a-key")
	r.wantExit(t, 2)
	if !strings.Contains(r.stderr, "usage: shmreg put [flags] KEY VALUE") || !strings.HasSuffix(r.stderr, "shmreg put: need KEY VALUE\n") {
		t.Errorf("put with one argument: stderr %q", r.stderr)
	}
	r = runCLI(t, "del", "--centers", addr)
	r.wantExit(t, 2)
	if !strings.HasSuffix(r.stderr, "shmreg del: need KEY\n") {
		t.Errorf("del without a key: stderr %q", r.stderr)
	}
}

// TestPutNeedsTheToken: --token reaches the center, which refuses writes
// without it.
func TestPutNeedsTheToken(t *testing.T) {
	c, conn := startCenter(t, "s3cret")
	addr := c.Addr().String()

	r := runCLI(t, "put", "--centers", addr, "--timeout", "3s", "cfg/k", "v")
	r.wantExit(t, 1)
	if !strings.Contains(r.stderr, "unauthorized: role admin needs the token") {
		t.Errorf("put without the token: stderr %q", r.stderr)
	}
	if _, err := getT(t, conn, "cfg/k"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("a refused put was stored: %v", err)
	}

	r = runCLI(t, "put", "--centers", addr, "--token", "s3cret", "cfg/k", "v")
	r.wantExit(t, 0)
	if rec, err := getT(t, conn, "cfg/k"); err != nil || string(rec.Value) != "v" {
		t.Fatalf("after put with the token: %+v, %v", rec, err)
	}
}

// TestRegisterUntilInterrupted runs 'shmreg register' as a user would: the
// instance is on the center while it runs, and gone after SIGTERM.
func TestRegisterUntilInterrupted(t *testing.T) {
	c, conn := startCenter(t, "")
	reg := startCLI(t, "register", "--centers", c.Addr().String(),
		"--service", "web", "--id", "web-9", "--address", "10.0.0.9", "--port", "8080",
		"--weight", "3", "--meta", "zone=b", "--meta", "canary=yes", "--ttl", "5s")
	reg.out.expect(t, `^registered svc/web/web-9 on `+regexp.QuoteMeta(c.ID())+`; heartbeating until interrupted$`)

	rec, err := getT(t, conn, "svc/web/web-9")
	if err != nil {
		t.Fatal(err)
	}
	in, err := registry.DecodeInstance(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	if in.Address != "10.0.0.9" || in.Port != 8080 || in.Weight != 3 || in.TTL != 5*time.Second ||
		in.Metadata["zone"] != "b" || in.Metadata["canary"] != "yes" || in.Health != registry.HealthPassing {
		t.Errorf("registered %+v", in)
	}

	reg.signal(t, syscall.SIGTERM)
	reg.out.expect(t, `^deregistered svc/web/web-9$`)
	reg.wait(t)
	if _, err := getT(t, conn, "svc/web/web-9"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("instance still there after deregistering: %v", err)
	}
}

func TestRegisterNeedsAService(t *testing.T) {
	r := runCLI(t, "register", "--centers", "127.0.0.1:1")
	r.wantExit(t, 2)
	if r.stderr != "shmreg register: --service is required\n" {
		t.Errorf("stderr %q", r.stderr)
	}
}

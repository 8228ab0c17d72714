package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// Messages of issue 15 item 3 that say what is wrong, checked on what the
// built binary prints.

// TestNoCenterSaidOnce: with no center reachable, put, del and register
// say "no center available" once, then why for each center.
func TestNoCenterSaidOnce(t *testing.T) {
	centers := "127.0.0.1:1,127.0.0.1:2"
	for _, args := range [][]string{
		{"put", "--centers", centers, "k", "v"},
		{"del", "--centers", centers, "k"},
		{"register", "--centers", centers, "--service", "web"},
	} {
		r := runCLI(t, args...)
		r.wantExit(t, 1)
		want := "shmreg " + args[0] + ": registry: no center available: dial tcp 127.0.0.1:1: connect: connection refused; dial tcp 127.0.0.1:2: connect: connection refused\n"
		if r.stderr != want {
			t.Errorf("%q: stderr %q\nwant %q", args, r.stderr, want)
		}
	}
}

// TestNotACenter: a client pointed at something that is not a shmreg
// center says so, instead of reporting a frame of 1213486160 bytes ("HTTP"
// read as a length) or a bare timeout. An HTTP server that answers the
// bytes it cannot parse with an error page (as nginx does) is recognised
// by its reply; one that waits for the end of a request line (Go's
// net/http) never answers, and the timeout says what that may mean.
func TestNotACenter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 512))
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	r := runCLI(t, "put", "--centers", addr, "k", "v")
	r.wantExit(t, 1)
	if want := "shmreg put: registry: no center available: " + addr + ` is not a shmreg center (it answered "HTTP"...)` + "\n"; r.stderr != want {
		t.Errorf("put to an HTTP server that answers: stderr %q\nwant %q", r.stderr, want)
	}

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer web.Close()
	addr = strings.TrimPrefix(web.URL, "http://")
	r = runCLI(t, "put", "--centers", addr, "k", "v")
	r.wantExit(t, 1)
	if want := "shmreg put: registry: no center available: " + addr + " did not answer the handshake within 2s (is it a shmreg center?)\n"; r.stderr != want {
		t.Errorf("put to an HTTP server that waits: stderr %q\nwant %q", r.stderr, want)
	}
}

// TestDataDirInUseNamesTheCenter: a second center on a data directory
// the first has open stops with a message naming the directory and the
// pid of the center holding it (not "open store: timeout").
func TestDataDirInUseNamesTheCenter(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	first := startCLI(t, "center", "--listen", addr, "--data", data, "--insecure", "--log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		conn, err := registry.Dial(ctx, addr, registry.DialOptions{})
		if err == nil {
			conn.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the first center did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := runCLI(t, "center", "--listen", "127.0.0.1:0", "--data", data, "--insecure")
	r.wantExit(t, 1)
	want := fmt.Sprintf("shmreg center: registry: data directory %s is in use by another center: pid %d (%s center --listen %s --data %s --insecure --log-level warn) holds %s/center.db locked; give each center its own data directory\n",
		data, first.cmd.Process.Pid, shmregBinary(t), addr, data, data)
	if r.stderr != want {
		t.Errorf("second center on %s: stderr %q\nwant %q", data, r.stderr, want)
	}
}

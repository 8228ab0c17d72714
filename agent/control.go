package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// listenControl binds the control socket. A stale socket file left by a
// dead agent is removed first; a live one (something answers) is an error.
func listenControl(path string, mode os.FileMode) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("agent: control socket %s is in use by another process", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: control socket: %w", err)
	}
	return ln, nil
}

// peerUID returns the uid of the process at the other end of a Unix
// connection (SO_PEERCRED: the credentials at connect time, from the kernel).
func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, serr
	}
	return int(cred.Uid), nil
}

// allowed reports whether uid may use the control socket: root, the agent's
// own uid and the configured ones.
func (a *Agent) allowed(uid int) bool {
	return uid == 0 || uid == os.Getuid() || slices.Contains(a.opts.ControlUIDs, uid)
}

func (a *Agent) serveControl(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	conns := make(map[net.Conn]bool)
	go func() {
		<-a.ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if a.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			a.log.Warn("control accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		mu.Lock()
		if a.ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return
		}
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers one client's requests, in order, until it hangs up.
func (a *Agent) serveConn(c net.Conn) {
	enc := json.NewEncoder(c)
	uid, err := peerUID(c.(*net.UnixConn))
	if err != nil || !a.allowed(uid) {
		a.log.Warn("control connection refused", "uid", uid, "err", err)
		enc.Encode(Response{Error: fmt.Sprintf("permission denied: uid %d may not use this agent", uid)})
		return
	}
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := readLine(br, MaxRequestLen)
		if err != nil {
			if errors.Is(err, ErrBadRequest) {
				enc.Encode(Response{Error: err.Error()})
			}
			return
		}
		if len(line) == 0 {
			continue
		}
		resp := a.serveRequest(line)
		if err := enc.Encode(resp); err != nil {
			return
		}
	}
}

// readLine reads one newline-terminated line of at most max bytes (the
// newline and a trailing CR removed).
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max+1 {
			return nil, fmt.Errorf("%w: request longer than %d bytes", ErrBadRequest, max)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			break // a last request without its newline
		}
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	return bytes.TrimSuffix(line, []byte{'\r'}), nil
}

// serveRequest decodes and runs one request. Operations that wait for the
// centers are bounded so that a hung center cannot hold a client forever.
func (a *Agent) serveRequest(line []byte) Response {
	req, err := DecodeRequest(line)
	if err != nil {
		return Response{Error: err.Error()}
	}
	ctx, cancel := context.WithTimeout(a.ctx, 30*time.Second)
	defer cancel()
	switch req.Op {
	case OpStatus:
		st := a.Status()
		return Response{OK: true, Status: &st}
	case OpSubscribe:
		err = a.Subscribe(ctx, req.Prefixes)
	case OpRefresh:
		err = a.Refresh(ctx, req.Key)
	case OpRegister:
		err = a.Register(ctx, *req.Instance, msDuration(req.TTLMs))
	case OpDeregister:
		err = a.Deregister(ctx, req.Service, req.ID)
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	return Response{OK: true}
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

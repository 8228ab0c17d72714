package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// server is a peer's server process that the harness started itself, on a
// free loopback port with a temporary directory, and stops on close.
type server struct {
	cmd  *exec.Cmd
	out  bytes.Buffer // its stdout and stderr, for errors
	dir  string
	done chan struct{}
}

// freePort returns a loopback TCP port that was free a moment ago. The
// window between closing the probe listener and the server binding is a
// race we accept: a clash fails the start with a clear error.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// lookBinary finds a peer's server binary or says it is not available.
func lookBinary(name, install string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s is not installed (%s)", ErrNotAvailable, name, install)
	}
	return p, nil
}

// startServer runs bin with args in a fresh temporary directory under dir
// and waits until ready returns nil (polling) or 20s pass.
func startServer(ctx context.Context, dir, bin string, args []string, ready func(ctx context.Context) error) (*server, error) {
	sdir, err := os.MkdirTemp(dir, "peer-")
	if err != nil {
		return nil, err
	}
	s := &server{dir: sdir, done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = sdir
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	// Its own process group, so that a Ctrl-C at the terminal reaches us
	// first and we stop it in order.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(sdir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := ready(pctx)
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			s.stop()
			return nil, fmt.Errorf("%s exited: %s", bin, lastLines(s.out.String(), 5))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("%s not ready after 20s: %v", bin, err)
		}
	}
}

// stop terminates the server (SIGTERM, then SIGKILL after 5s) and removes
// its directory.
func (s *server) stop() error {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	return os.RemoveAll(s.dir)
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

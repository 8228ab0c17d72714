package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// cliResult is what one run of the built binary printed and how it exited.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the built shmreg with args, bounded in time, with
// $SHMREG_DIR pointing at a test directory so that nothing reaches
// /dev/shm/shmreg.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runCLIEnv(t, nil, args...)
}

// runCLIEnv is runCLI with env (KEY=value) added to the environment.
func runCLIEnv(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shmregBinary(t), args...)
	cmd.Env = append(append(cmd.Environ(), "SHMREG_DIR="+t.TempDir()), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("shmreg %q: %v", args, err)
	}
	return res
}

// wantExit fails the test unless the run exited with code.
func (r cliResult) wantExit(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

// running is a shmreg started in the background, its output read line by
// line. It is killed at the end of the test if still running.
type running struct {
	cmd    *exec.Cmd
	out    *lineReader
	stderr bytes.Buffer // read it only once the process is waited for
}

func startCLI(t *testing.T, args ...string) *running {
	t.Helper()
	return startCLIEnv(t, nil, args...)
}

// startCLIEnv is startCLI with env (KEY=value) added to the environment.
func startCLIEnv(t *testing.T, env []string, args ...string) *running {
	t.Helper()
	p := &running{cmd: exec.Command(shmregBinary(t), args...)}
	p.cmd.Env = append(append(p.cmd.Environ(), "SHMREG_DIR="+t.TempDir()), env...)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	p.out = newLineReader(stdout)
	return p
}

// stop signals the process and waits for it to exit cleanly.
func (p *running) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	p.signal(t, sig)
	p.wait(t)
}

func (p *running) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait fails the test unless the process exits with status 0 within 10s.
// Output lines not read before wait may be lost (exec closes the pipe).
func (p *running) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", p.cmd.Args[1], err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit within 10s\n%s", p.cmd.Args[1], p.stderr.String())
	}
}

// lineReader delivers a running command's output line by line.
type lineReader struct {
	lines chan string
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{lines: make(chan string, 64)}
	go func() {
		defer close(lr.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lr.lines <- sc.Text()
		}
	}()
	return lr
}

// next returns the next line, failing the test if none comes within 10s
// (a generous bound: this proves "not stuck", it times nothing).
func (lr *lineReader) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-lr.lines:
		if !ok {
			t.Fatal("output ended")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no output line within 10s")
	}
	return ""
}

// expect reads the next line and checks it against the pattern.
func (lr *lineReader) expect(t *testing.T, pattern string) string {
	t.Helper()
	l := lr.next(t)
	if !regexp.MustCompile(pattern).MatchString(l) {
		t.Fatalf("line %q does not match %q", l, pattern)
	}
	return l
}

// testRegion creates a small region in a test directory and returns its
// writer (closed at the end of the test) and the path the CLI is given.
func testRegion(t *testing.T) (*shm.Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "region")
	w, err := shm.OpenWriter(path, shm.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

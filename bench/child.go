package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child is a process the propagate workload started (an agent or a
// center), stopped with SIGTERM as an operator would.
type child struct {
	what    string // "agent" or "center", for errors
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // cmd.Wait's result, set before done is closed
}

// startChild starts cmd in a session of its own, as a process on its own
// host would be (see readProcessesOnce), killed if the harness dies; its
// stderr goes to the harness's unless cmd says otherwise.
func startChild(cmd *exec.Cmd, what string) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s process: %w", what, err)
	}
	c := &child{what: what, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited is closed once the process has exited.
func (c *child) exited() <-chan struct{} { return c.done }

// err is why the process exited; valid once exited is closed.
func (c *child) err() error {
	if c.waitErr == nil {
		return fmt.Errorf("%s process exited", c.what)
	}
	return fmt.Errorf("%s process: %w", c.what, c.waitErr)
}

// stop asks the process to shut down (SIGTERM: it closes cleanly and exits
// 0) and kills it if it has not exited within 5s. A process that had
// already stopped by itself is an error.
func (c *child) stop() error {
	select {
	case <-c.done:
		return c.err()
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.waitErr
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		return errors.New(c.what + " process did not stop within 5s of SIGTERM; killed")
	}
}

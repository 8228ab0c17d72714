package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// agentName labels the propagate results: real agents from package agent.
const agentName = "agent"

// runningAgent is an agent the propagate workload started: in this
// process (package agent) or as a process of its own (`shmreg agent`).
type runningAgent interface {
	// exited is closed when the agent stopped by itself (a process that
	// died); never for an in-process agent.
	exited() <-chan struct{}
	// err is why the agent exited; valid once exited is closed.
	err() error
	// stop shuts the agent down, waiting at most 5s.
	stop() error
}

// startAgent starts an agent that follows centers (the first, failing over
// to the next) into a new region called name, subscribed to every service
// instance. With cfg.AgentCmd it is an agent process, otherwise an agent
// in this process. opts.Size, if set, is the region's initial size.
func startAgent(ctx context.Context, cfg PropagateConfig, centers []string, name string, opts shm.Options) (runningAgent, error) {
	if cfg.AgentCmd == nil {
		return startInProcess(ctx, centers, name, opts)
	}
	args := []string{
		"--centers", strings.Join(centers, ","),
		"--region", opts.Resolve(name),
		"--subscribe", registry.InstancePrefix,
		"--log-level", "warn",
	}
	if opts.Size > 0 {
		args = append(args, "--region-size", strconv.FormatInt(opts.Size, 10))
	}
	cmd := cfg.AgentCmd(args)
	// A session of its own, as an agent on its own host would be (see
	// readProcessesOnce), and killed if the harness dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent process: %w", err)
	}
	p := &agentProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// agentProcess is an agent running as a process of its own.
type agentProcess struct {
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // cmd.Wait's result, set before done is closed
}

func (p *agentProcess) exited() <-chan struct{} { return p.done }

func (p *agentProcess) err() error {
	if p.waitErr == nil {
		return errors.New("agent process exited")
	}
	return fmt.Errorf("agent process: %w", p.waitErr)
}

// stop asks the agent to shut down (SIGTERM: it closes its region cleanly
// and exits 0) and kills it if it has not exited within 5s.
func (p *agentProcess) stop() error {
	select {
	case <-p.done:
		return p.err() // it had stopped by itself: that is a failure
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return errors.New("agent process did not stop within 5s of SIGTERM; killed")
	}
}

// inProcessAgent is an agent from package agent in this process.
type inProcessAgent struct{ a *agent.Agent }

func startInProcess(ctx context.Context, centers []string, name string, opts shm.Options) (*inProcessAgent, error) {
	a, err := agent.New(agent.Options{
		Centers:  centers,
		Region:   name,
		Shm:      opts,
		Prefixes: []string{registry.InstancePrefix},
	})
	if err != nil {
		return nil, err
	}
	if err := a.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return &inProcessAgent{a}, nil
}

func (*inProcessAgent) exited() <-chan struct{} { return nil }
func (*inProcessAgent) err() error              { return nil }

func (a *inProcessAgent) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.a.Shutdown(ctx)
}

// whileRunning is ctx, cancelled with the agent's exit error if the agent
// stops by itself: a wait for its region then ends at once instead of
// running into its timeout.
func whileRunning(ctx context.Context, a runningAgent) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	if a.exited() == nil {
		return ctx, func() { cancel(nil) }
	}
	go func() {
		select {
		case <-a.exited():
			cancel(a.err())
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

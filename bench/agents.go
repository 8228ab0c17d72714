package bench

import (
	"context"
	"strconv"
	"strings"
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

var (
	_ runningAgent = (*child)(nil)
	_ runningAgent = (*inProcessAgent)(nil)
)

// startAgent starts an agent that follows centers (the first, failing over
// to the next) into a new region called name, subscribed to every service
// instance. With cfg.AgentCmd it is an agent process, otherwise an agent
// in this process. opts.Size, if set, is the region's initial size.
func startAgent(ctx context.Context, cfg PropagateConfig, centers []string, name string, opts shm.Options) (runningAgent, error) {
	if cfg.AgentCmd == nil {
		a, err := startInProcess(ctx, centers, name, opts)
		if err != nil {
			return nil, err // not a nil *inProcessAgent in a non-nil interface
		}
		return a, nil
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
	c, err := startChild(cfg.AgentCmd(args), "agent")
	if err != nil {
		return nil, err
	}
	return c, nil
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

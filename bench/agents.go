package bench

import (
	"context"
	"time"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// agentName labels the propagate results: real agents from package agent,
// in this process.
const agentName = "agent"

// startAgent starts an agent that follows centers (the first, failing over
// to the next) into a new region called name, subscribed to every service
// instance.
func startAgent(ctx context.Context, centers []string, name string, opts shm.Options) (*agent.Agent, error) {
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
	return a, nil
}

// stopAgent shuts an agent down, waiting at most 5s.
func stopAgent(a *agent.Agent) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return a.Shutdown(ctx)
}

// Package cluster is the raft cluster's backend of a registry center: the
// records live in etcd (embedded in every center, or a cluster the user
// runs), a write is acknowledged once etcd committed it on a majority, and
// every center serves its subscribers from one etcd watch. Revisions are
// etcd's, global to the cluster, so an agent resumes on any center.
// Listener centers are etcd learners; a supervisor elected among the
// centers promotes one when a voter is lost. The front of a center
// (sessions, subscriptions, liveness) is registry/center; New puts the two
// together.
package cluster

import (
	"context"

	"github.com/shmreg/shmreg/registry/center"
)

// Center is a center of a raft cluster: the front of registry/center over
// this package's backend.
type Center struct {
	*center.Center
	backend *Backend
}

// New starts (or connects to) the etcd member, loads the records and
// returns a center ready to Start. ctx bounds the start of the member.
func New(ctx context.Context, opts Options) (*Center, error) {
	b, err := NewBackend(ctx, opts)
	if err != nil {
		return nil, err
	}
	front, err := center.New(b.opts.Options, b)
	if err != nil {
		b.Close()
		return nil, err
	}
	return &Center{Center: front, backend: b}, nil
}

// Cluster is the center's backend.
func (c *Center) Cluster() *Backend { return c.backend }

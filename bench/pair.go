package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

// centerPair is the mirrored pair of centers of the propagate workload:
// two processes (`shmreg center`, with cfg.CenterCmd) or two in-memory
// centers in this process.
type centerPair struct {
	addrs  []string
	inproc []*pair.Center // in this process; else procs
	procs  []*child
}

// startPair starts two centers mirroring each other on loopback ports.
// Center processes keep their bbolt store under dir (a tmpfs by default,
// as the regions: an fsync costs next to nothing there).
func startPair(ctx context.Context, cfg PropagateConfig, dir string) (*centerPair, error) {
	pa, err := freePort()
	if err != nil {
		return nil, err
	}
	pb, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &centerPair{addrs: []string{loopback(pa), loopback(pb)}}
	for i := range 2 {
		self, peer := p.addrs[i], p.addrs[1-i]
		if cfg.CenterCmd == nil {
			c, err := StartCenter(ctx, pair.Options{Options: center.Options{Insecure: true, Listen: self, SelfPreservation: -1}, Peer: peer})
			if err != nil {
				p.stop()
				return nil, err
			}
			p.inproc = append(p.inproc, c)
			continue
		}
		c, err := startChild(cfg.CenterCmd([]string{
			"--listen", self, "--peer", peer, "--data", filepath.Join(dir, fmt.Sprintf("center-%d", i)),
			"--self-preservation", "-1", "--log-level", "warn", "--insecure",
		}), "center")
		if err != nil {
			p.stop()
			return nil, err
		}
		p.procs = append(p.procs, c)
	}
	for i := range p.procs {
		if err := p.waitListening(ctx, i); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// waitListening waits until center process i accepts a connection.
func (p *centerPair) waitListening(ctx context.Context, i int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := registry.Dial(ctx, p.addrs[i], registry.DialOptions{Role: registry.RoleInstance, Name: "bench-propagate"})
		if err == nil {
			return conn.Close()
		}
		select {
		case <-p.procs[i].exited():
			return p.procs[i].err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("center %s not listening after 30s: %w", p.addrs[i], err)
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// stop shuts the centers down.
func (p *centerPair) stop() error {
	var errs []error
	for _, c := range p.inproc {
		errs = append(errs, StopCenter(c))
	}
	for _, c := range p.procs {
		errs = append(errs, c.stop())
	}
	return errors.Join(errs...)
}

// died is the error of a center process that exited by itself, if any.
func (p *centerPair) died() error {
	for _, c := range p.procs {
		select {
		case <-c.exited():
			return c.err()
		default:
		}
	}
	return nil
}

// instances is the number of live instances center i holds.
func (p *centerPair) instances(ctx context.Context, i int) (int, error) {
	if p.inproc != nil {
		return len(p.inproc[i].List(registry.InstancePrefix)), nil
	}
	conn, err := registry.Dial(ctx, p.addrs[i], registry.DialOptions{Role: registry.RoleInstance, Name: "bench-propagate"})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	recs, err := conn.List(ctx, registry.InstancePrefix)
	return len(recs), err
}

// waitPeer waits until the second center holds as many live instances as
// the first, so that every agent starts from the same state.
func (p *centerPair) waitPeer(ctx context.Context) error {
	want, err := p.instances(ctx, 0)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := p.instances(ctx, 1)
		if err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		if err := p.died(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("propagate: the peer center holds %d of %d instances after 60s", n, want)
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

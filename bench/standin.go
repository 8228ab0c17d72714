package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// standinName is how results measured through regionSubscriber are
// labelled: it is not the agent package, and the output says so.
const standinName = "agent-standin"

// regionSubscriber stands in for the agent (which lives on another branch)
// in the propagate workload: it subscribes to one center and applies every
// batch to its own region with shm.Writer, as the agent does — a snapshot
// replaces everything under its prefixes, changes are put or deleted, each
// batch is committed with the center's place — without the agent's
// failover, control socket or metrics.
type regionSubscriber struct {
	conn *registry.Conn
	sub  *registry.Subscription
	w    *shm.Writer
	done chan error
}

// applyChunk bounds one commit, so that readers see a large snapshot
// arrive in steps rather than wait on one huge commit.
const applyChunk = 4096

// startSubscriber dials addr, subscribes to prefixes and applies batches
// to a new region called name in opts.Dir until ctx is done or the
// connection fails.
func startSubscriber(ctx context.Context, addr, name string, opts shm.Options, prefixes []string) (*regionSubscriber, error) {
	w, err := shm.OpenWriter(name, opts)
	if err != nil {
		return nil, err
	}
	conn, err := registry.Dial(ctx, addr, registry.DialOptions{Name: "bench-" + name})
	if err != nil {
		w.Close()
		return nil, err
	}
	sub, err := conn.Subscribe(ctx, prefixes, 0)
	if err != nil {
		conn.Close()
		w.Close()
		return nil, err
	}
	s := &regionSubscriber{conn: conn, sub: sub, w: w, done: make(chan error, 1)}
	go func() { s.done <- s.run(ctx) }()
	return s, nil
}

func (s *regionSubscriber) run(ctx context.Context) error {
	var b shm.Batch
	for {
		batch, err := s.sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := s.apply(&b, batch); err != nil {
			return err
		}
	}
}

// apply writes one batch to the region.
func (s *regionSubscriber) apply(b *shm.Batch, batch registry.Batch) error {
	b.Reset()
	flush := func(last bool) error {
		if last {
			b.SetPlace(batch.CenterID, batch.Rev)
		}
		if b.Len() == 0 && !last {
			return nil
		}
		err := s.w.Commit(b)
		b.Reset()
		return err
	}
	if batch.Snapshot {
		keep := make(map[string]bool, len(batch.Records))
		for _, r := range batch.Records {
			keep[r.Key] = true
		}
		if err := s.dropMissing(b, batch.Prefixes, keep, flush); err != nil {
			return err
		}
	}
	for _, r := range batch.Records {
		if r.Deleted {
			b.Delete([]byte(r.Key))
		} else {
			b.Put([]byte(r.Key), r.Value)
		}
		if b.Len() == applyChunk {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	return flush(true)
}

// dropMissing deletes the region's keys under prefixes that a snapshot
// does not hold.
func (s *regionSubscriber) dropMissing(b *shm.Batch, prefixes []string, keep map[string]bool, flush func(bool) error) error {
	r, err := shm.Open(s.w.Path(), shm.Options{})
	if err != nil {
		return err
	}
	defer r.Close()
	var gone [][]byte
	err = r.Scan(nil, func(k, _ []byte) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(string(k), p) && !keep[string(k)] {
				gone = append(gone, append([]byte(nil), k...))
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, k := range gone {
		b.Delete(k)
		if b.Len() == applyChunk {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	return nil
}

// close stops applying and closes the connection and the region writer.
func (s *regionSubscriber) close() error {
	cerr := s.conn.Close()
	err := <-s.done
	if errors.Is(err, registry.ErrClosed) || (err != nil && cerr == nil && s.conn.Err() != nil) {
		err = nil // we closed it
	}
	if werr := s.w.Close(); err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", standinName, err)
	}
	return nil
}

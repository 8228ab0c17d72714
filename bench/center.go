package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

// centerSystem is a lookup over TCP from a shmreg center running in this
// process (in memory, no peer): each client has its own connection.
type centerSystem struct {
	c     *pair.Center
	mu    sync.Mutex
	conns []*registry.Conn
}

// StartCenter starts an in-memory center on a loopback port.
func StartCenter(ctx context.Context, opts pair.Options) (*pair.Center, error) {
	c, err := pair.New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return c, nil
}

// StopCenter shuts a center down, waiting at most 5s.
func StopCenter(c *pair.Center) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Shutdown(ctx)
}

// RegisterAll registers instances [from, to) of the dataset on the center
// at addr, over `conns` connections at once.
func RegisterAll(ctx context.Context, addr string, from, to, conns int) error {
	if to <= from {
		return nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	conns = max(1, min(conns, to-from))
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := registry.Dial(ctx, addr, registry.DialOptions{Role: registry.RoleInstance, Name: "bench-load"})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer conn.Close()
			for i := from + w; i < to; i += conns {
				if _, err := conn.Register(ctx, Instance(i), registry.RegisterOptions{}); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("register %d: %w", i, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// OpenCenter starts a center and registers every instance of d on it.
func OpenCenter(ctx context.Context, d *Dataset, _ string) (System, error) {
	c, err := StartCenter(ctx, pair.Options{Options: center.Options{Insecure: true, SelfPreservation: -1}})
	if err != nil {
		return nil, err
	}
	if err := RegisterAll(ctx, c.Addr().String(), 0, d.Len(), 16); err != nil {
		StopCenter(c)
		return nil, fmt.Errorf("center load: %w", err)
	}
	return &centerSystem{c: c}, nil
}

func (s *centerSystem) Name() string { return "center" }

func (s *centerSystem) Client(ctx context.Context, _ int) (Lookup, error) {
	conn, err := registry.Dial(ctx, s.c.Addr().String(), registry.DialOptions{Name: "bench"})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.conns = append(s.conns, conn)
	s.mu.Unlock()
	var sink int
	return func(ctx context.Context, key []byte) error {
		rec, err := conn.Get(ctx, string(key))
		if err != nil {
			return err
		}
		sink += touch(rec.Value)
		return nil
	}, nil
}

func (s *centerSystem) Close() error {
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	return StopCenter(s.c)
}

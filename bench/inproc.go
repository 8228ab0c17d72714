package bench

import (
	"context"
	"fmt"

	"github.com/shmreg/shmreg/shm"
)

// mapSystem is the floor: an in-process map[string][]byte holding the same
// entries. Clients share it (read-only, so no lock).
type mapSystem struct {
	m map[string][]byte
}

// OpenMap loads d into an in-process Go map.
func OpenMap(_ context.Context, d *Dataset, _ string) (System, error) {
	m := make(map[string][]byte, d.Len())
	for i, k := range d.Keys {
		m[string(k)] = d.Values[i]
	}
	return &mapSystem{m: m}, nil
}

func (s *mapSystem) Name() string { return "map" }
func (s *mapSystem) Close() error { return nil }

func (s *mapSystem) Client(context.Context, int) (Lookup, error) {
	var sink int
	return func(_ context.Context, key []byte) error {
		v, ok := s.m[string(key)] // no allocation: the compiler converts in place
		if !ok {
			return fmt.Errorf("map: %s missing", key)
		}
		sink += touch(v)
		return nil
	}, nil
}

// shmSystem reads a region with zero-copy lookups. The region is filled by
// a Writer that stays open for the system's life, as an agent's would. Its
// clients share one Reader; with sessions each client holds a Session of
// its own (the fast path for a goroutine that looks up in a loop, as each
// bbolt client holds a read transaction), without them each lookup is a
// Reader.View.
type shmSystem struct {
	w        *shm.Writer
	r        *shm.Reader
	opts     shm.Options
	name     string
	sessions bool
}

// regionSize is a data file size with room for d and for its growth.
func regionSize(d *Dataset) int64 {
	var b int64
	for i, k := range d.Keys {
		b += int64(len(k) + len(d.Values[i]) + 128)
	}
	return max(2*b, 8<<20)
}

// FillRegion writes d into a new region called name in dir, in batches of
// 4096 entries (one commit each), and returns its writer.
func FillRegion(d *Dataset, dir, name string) (*shm.Writer, shm.Options, error) {
	opts := shm.Options{Dir: dir, Size: regionSize(d)}
	w, err := shm.OpenWriter(name, opts)
	if err != nil {
		return nil, opts, err
	}
	var b shm.Batch
	for i, k := range d.Keys {
		b.Put(k, d.Values[i])
		if b.Len() == 4096 || i == d.Len()-1 {
			if err := w.Commit(&b); err != nil {
				w.Close()
				return nil, opts, fmt.Errorf("fill region: %w", err)
			}
			b.Reset()
		}
	}
	return w, opts, nil
}

// OpenShm fills a region in dir with d and opens a reader on it; each
// client reads through a Session of its own.
func OpenShm(ctx context.Context, d *Dataset, dir string) (System, error) {
	return openShm(ctx, d, dir, "shm", true)
}

// OpenShmView is OpenShm with every lookup a Reader.View on the shared
// Reader: the path of code that does not keep a Session.
func OpenShmView(ctx context.Context, d *Dataset, dir string) (System, error) {
	return openShm(ctx, d, dir, "shm-view", false)
}

func openShm(_ context.Context, d *Dataset, dir, name string, sessions bool) (System, error) {
	w, opts, err := FillRegion(d, dir, "bench")
	if err != nil {
		return nil, err
	}
	r, err := shm.Open("bench", opts)
	if err != nil {
		w.Close()
		return nil, err
	}
	return &shmSystem{w: w, r: r, opts: opts, name: name, sessions: sessions}, nil
}

func (s *shmSystem) Name() string { return s.name }

func (s *shmSystem) Close() error {
	err := s.r.Close()
	if s.w != nil {
		if e := s.w.Close(); err == nil {
			err = e
		}
	}
	return err
}

func (s *shmSystem) Client(context.Context, int) (Lookup, error) {
	if s.sessions {
		return sessionLookup(s.r)
	}
	return viewLookup(s.r), nil
}

// viewLookup is a zero-copy lookup on r.
func viewLookup(r *shm.Reader) Lookup {
	var sink int
	use := func(v []byte) error { sink += touch(v); return nil }
	return func(_ context.Context, key []byte) error {
		return r.View(key, use)
	}
}

// sessionLookup is a zero-copy lookup through a Session of r's, for one
// goroutine. The session's slot goes back when the Reader closes.
func sessionLookup(r *shm.Reader) (Lookup, error) {
	s, err := r.Session()
	if err != nil {
		return nil, err
	}
	var sink int
	use := func(v []byte) error { sink += touch(v); return nil }
	return func(_ context.Context, key []byte) error {
		return s.View(key, use)
	}, nil
}

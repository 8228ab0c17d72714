package bench

import (
	"context"
	"errors"
)

// ErrNotAvailable marks a system that cannot run on this machine (its
// server binary is not installed). It is reported as such, never faked.
var ErrNotAvailable = errors.New("not available")

// System is one thing lookups can be measured against: loaded with a
// Dataset when it is opened, closed (and its server stopped and its files
// removed) by Close.
type System interface {
	// Name is the system's name in tables and records: map, shm, bbolt,
	// center, redis, etcd.
	Name() string
	// Client returns the i-th client's lookup function. Clients are made
	// before the clock starts; each is used by one goroutine only.
	Client(ctx context.Context, i int) (Lookup, error)
	Close() error
}

// Lookup fetches the value under key and touches its first and last byte
// (so that every system pays for reaching the value's memory). It returns
// an error if the key is missing: a benchmark that silently looks up nothing
// measures nothing.
type Lookup func(ctx context.Context, key []byte) error

// Opener opens one system loaded with a dataset; the compare workload
// calls one per system in turn, so that only one system is running at a
// time.
type Opener struct {
	Name string
	Open func(ctx context.Context, d *Dataset, dir string) (System, error)
}

// touch reads a value's first and last byte into sink so that the compiler
// cannot drop the read. Callers keep their own sink.
func touch(v []byte) int {
	if len(v) == 0 {
		return 0
	}
	return int(v[0]) + int(v[len(v)-1])
}

package discovery

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/shmreg/shmreg/shm"
)

// Catalog serves instances, pickers, watches and typed values from one
// region. It is safe for concurrent use. Its background goroutines (the one
// change waiter, one per watcher, background refreshes) all end at Close.
type Catalog struct {
	r     *shm.Reader
	owned bool // Close closes r
	opts  Options

	// services maps a service name to its cache. The map is never
	// modified once published: adding a service publishes a copy (under
	// servicesMu), so a lookup is one atomic load and a plain map read.
	// Entries are never removed: a process calls a bounded set of services.
	services   atomic.Pointer[map[string]*serviceCache]
	servicesMu sync.Mutex

	hub       *hub
	refresher *refresher
	fields    sync.Map // reflect.Type -> *structFields, see stale.go

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed against wg.Add racing Close
	closed bool       // Close was called; no goroutine may start
	// shut mirrors closed for the lock-free paths, which must not touch
	// the reader once it is closed.
	shut atomic.Bool
	wg   sync.WaitGroup // every goroutine the catalog started
}

// Open opens the region called name (resolved as shm.Open does, with
// opts.Region) and returns a catalog over it. Close closes the region.
func Open(name string, opts Options) (*Catalog, error) {
	r, err := shm.Open(name, opts.Region)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	c := New(r, opts)
	c.owned = true
	return c, nil
}

// New returns a catalog over an open reader. The reader stays the caller's:
// Close does not close it, and it must stay open until Close returns.
func New(r *shm.Reader, opts Options) *Catalog {
	opts = opts.withDefaults()
	c := &Catalog{r: r, opts: opts}
	c.services.Store(&map[string]*serviceCache{})
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.hub = newHub(c)
	c.refresher = newRefresher(c)
	return c
}

// Reader returns the region reader the catalog serves from, for raw Get,
// View and Scan.
func (c *Catalog) Reader() *shm.Reader { return c.r }

// Close stops every watcher (their channels are closed) and background
// refresh, waits for the catalog's goroutines to end, and closes the region
// if Open opened it. Slices returned by Instances stay valid (they are plain
// Go memory). Calls made after Close fail with ErrClosed; calls must not
// run concurrently with Close.
func (c *Catalog) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.shut.Store(true)
	c.mu.Unlock()
	if already {
		return nil
	}
	c.cancel()
	c.wg.Wait()
	if c.owned {
		return c.r.Close()
	}
	return nil
}

// goTracked runs f in a goroutine that Close waits for. It reports false,
// and does not run f, once the catalog is closed.
func (c *Catalog) goTracked(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// fieldsOf returns the cached field set of a struct type.
func (c *Catalog) fieldsOf(t reflect.Type) *structFields {
	if f, ok := c.fields.Load(t); ok {
		return f.(*structFields)
	}
	f, _ := c.fields.LoadOrStore(t, newStructFields(t))
	return f.(*structFields)
}

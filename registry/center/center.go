package center

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"

	"golang.org/x/sync/semaphore"
)

// Center is the front of one registry center (see Backend): it serves the
// wire protocol, authenticates and bounds connections, pushes committed
// changes to subscribers and expires dead instances. Its backend keeps,
// orders and replicates the records.
//
// Locks: the backend holds its records locked while it publishes a batch
// and while a Read runs; subMu, taken inside those, guards the set of
// subscribers, so that a new subscriber's snapshot and its registration
// happen between two batches; the fan-out goroutine holds it while it
// delivers. sessMu guards the connections.
type Center struct {
	opts    Options
	log     *slog.Logger
	backend Backend
	metrics *centerMetrics

	subMu  sync.Mutex
	groups map[string]*group // subscribers by prefix set (see subscription.go)
	index  prefixIndex       // the groups by prefix
	fan    fanout
	snaps  snapshotCache

	live *liveness

	ln       net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  atomic.Bool
	stopOnce sync.Once

	sessMu   sync.Mutex
	sessions map[*session]struct{}
	perAddr  map[string]int // open connections per remote IP
	nextConn atomic.Uint64
	// refusedWarned is when a refused connection was last logged.
	refusedWarned atomic.Int64

	// inbound is the budget of bytes in partly read large frames, outbound
	// that of large frames queued for writing, across all connections.
	inbound, outbound *semaphore.Weighted

	health health
}

// New returns the front of a center over backend, ready to Start.
func New(opts Options, backend Backend) (*Center, error) {
	opts = opts.withDefaults()
	if opts.Insecure && opts.Token != "" {
		return nil, fmt.Errorf("%w: Insecure with a Token: a center either authenticates writers or does not", wire.ErrInvalid)
	}
	m, err := newCenterMetrics(opts.Registerer, func() float64 {
		var n int
		backend.Read(func(v View) { n = v.Len() })
		return float64(n)
	})
	if err != nil {
		return nil, fmt.Errorf("registry: metrics: %w", err)
	}
	c := &Center{
		opts:     opts,
		log:      opts.Logger,
		backend:  backend,
		metrics:  m,
		groups:   make(map[string]*group),
		sessions: make(map[*session]struct{}),
		perAddr:  make(map[string]int),
		inbound:  semaphore.NewWeighted(int64(opts.MaxInbound)),
		outbound: semaphore.NewWeighted(int64(opts.MaxOutbound)),
	}
	c.snaps.init()
	c.fan.wake = make(chan struct{}, 1)
	c.live = newLiveness(c)
	// A center that just started gives every instance one full TTL to
	// heartbeat again before it may expire.
	now := time.Now()
	backend.Read(func(v View) {
		v.Scan(func(r *wire.Record) bool {
			if !r.Deleted && r.IsInstance() && backend.Judges(r) {
				c.live.upsert(r, 0, now)
			}
			return true
		})
	})
	return c, nil
}

// ID is the center's stable id.
func (c *Center) ID() string { return c.backend.ID() }

// Backend is the center's backend.
func (c *Center) Backend() Backend { return c.backend }

// Options are the center's options, defaults filled in.
func (c *Center) Options() Options { return c.opts }

// Logger is the center's logger.
func (c *Center) Logger() *slog.Logger { return c.log }

// Addr is the address the center listens on; nil before Start.
func (c *Center) Addr() net.Addr {
	if c.ln == nil {
		return nil
	}
	return c.ln.Addr()
}

// Rev is the last revision this center issued.
func (c *Center) Rev() uint64 {
	var rev uint64
	c.backend.Read(func(v View) { rev = v.Rev() })
	return rev
}

// Start binds the listener and starts serving, expiring and replicating in
// the background. The center runs until ctx is done or Shutdown is called.
func (c *Center) Start(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("registry: center already started")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.opts.Listen)
	if err != nil {
		return fmt.Errorf("registry: listen: %w", err)
	}
	if c.opts.TLS != nil {
		ln = tls.NewListener(ln, c.opts.TLS)
	}
	c.ln = ln
	c.ctx, c.cancel = context.WithCancel(ctx)
	if err := c.backend.Start(c.ctx, c); err != nil {
		c.cancel()
		ln.Close()
		return err
	}
	c.goFunc(c.acceptLoop)
	c.goFunc(c.fanoutLoop)
	c.goFunc(c.live.sweepLoop)
	c.goFunc(c.healthLoop)
	switch {
	case c.opts.Insecure:
		c.log.Warn("INSECURE: this center accepts writes and peers from anyone who can reach it (no token, no client certificate required); never run it so in production",
			"addr", ln.Addr().String())
	case c.opts.InsecurePeers:
		c.log.Warn("INSECURE PEERS: this center accepts role peer from anyone who can reach it; a forged peer can overwrite every record",
			"addr", ln.Addr().String())
	case c.opts.Token == "" && (c.opts.TLS == nil || c.opts.TLS.ClientCAs == nil):
		c.log.Warn("no token and no client certificates: this center refuses every write and every peer (it serves reads only); set a token",
			"addr", ln.Addr().String())
	}
	c.log.Info("center started", "id", c.ID(), "addr", ln.Addr().String(), "rev", c.Rev())
	return nil
}

func (c *Center) goFunc(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Shutdown stops accepting, closes every connection, stops the background
// work and closes the store. It waits for the goroutines until ctx is done.
func (c *Center) Shutdown(ctx context.Context) error {
	var err error
	c.stopOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
			c.ln.Close()
			c.sessMu.Lock()
			for s := range c.sessions {
				s.close(nil)
			}
			c.sessMu.Unlock()
			done := make(chan struct{})
			go func() { c.wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				err = ctx.Err()
				return // the store stays open: goroutines may still use it
			}
		}
		if cerr := c.backend.Close(); err == nil {
			err = cerr
		}
		c.log.Info("center stopped", "id", c.ID())
	})
	return err
}

func (c *Center) acceptLoop() {
	go func() { <-c.ctx.Done(); c.ln.Close() }()
	var delay time.Duration
	for {
		nc, err := c.ln.Accept()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary (for example too many open files): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			c.log.Warn("accept", "err", err)
			select {
			case <-time.After(delay):
			case <-c.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		s := newSession(c, nc)
		c.sessMu.Lock()
		if c.ctx.Err() != nil {
			c.sessMu.Unlock()
			nc.Close()
			return
		}
		if reason := c.admitConn(s); reason != "" {
			c.sessMu.Unlock()
			c.refuseConn(nc, reason)
			continue
		}
		c.sessions[s] = struct{}{}
		c.perAddr[s.addr]++
		c.sessMu.Unlock()
		c.goFunc(s.serve)
	}
}

// admitConn says why a new connection must be refused ("" if it may be
// served). Called with sessMu held.
func (c *Center) admitConn(s *session) string {
	switch {
	case len(c.sessions) >= c.opts.MaxConns:
		return "total"
	case c.perAddr[s.addr] >= c.opts.MaxConnsPerAddr:
		return "per_addr"
	}
	return ""
}

// refuseConn tells a refused client why, briefly and without blocking the
// accept loop, and closes the connection.
func (c *Center) refuseConn(nc net.Conn, reason string) {
	c.metrics.refusedConns.WithLabelValues(reason).Inc()
	now := time.Now().UnixNano()
	if last := c.refusedWarned.Load(); now-last >= int64(time.Minute) && c.refusedWarned.CompareAndSwap(last, now) {
		c.log.Warn("refusing connections over a limit (further ones this minute are only counted)", "reason", reason,
			"remote", nc.RemoteAddr().String(), "max_conns", c.opts.MaxConns, "max_conns_per_addr", c.opts.MaxConnsPerAddr)
	}
	msg := fmt.Sprintf("too many connections (limit %d)", c.opts.MaxConns)
	if reason == "per_addr" {
		msg = fmt.Sprintf("too many connections from one address (limit %d)", c.opts.MaxConnsPerAddr)
	}
	b, _ := wire.EncodeFrame(wire.MsgError, 0, &wire.ErrorMsg{Code: wire.CodeOverloaded, Message: msg})
	go func() {
		nc.SetDeadline(time.Now().Add(time.Second))
		nc.Write(b)
		nc.Close()
	}()
}

func (c *Center) dropSession(s *session) {
	c.sessMu.Lock()
	if _, ok := c.sessions[s]; ok {
		delete(c.sessions, s)
		if c.perAddr[s.addr]--; c.perAddr[s.addr] <= 0 {
			delete(c.perAddr, s.addr)
		}
	}
	c.sessMu.Unlock()
}

// ---- reads ----

// Get returns the live record under key, or ErrNotFound.
func (c *Center) Get(key string) (wire.Record, error) {
	var r *wire.Record
	c.backend.Read(func(v View) { r = v.Get(key) })
	if r == nil || r.Deleted {
		return wire.Record{}, fmt.Errorf("%w: %s", wire.ErrNotFound, key)
	}
	return *r, nil
}

// List returns the live records under prefix, sorted by key.
func (c *Center) List(prefix string) []wire.Record {
	ptrs := c.list(prefix)
	out := make([]wire.Record, len(ptrs))
	for i, r := range ptrs {
		out[i] = *r
	}
	return out
}

// list is List without the copies (records are immutable once published).
func (c *Center) list(prefix string) []*wire.Record {
	out := make([]*wire.Record, 0)
	c.backend.Read(func(v View) {
		v.Scan(func(r *wire.Record) bool {
			if !r.Deleted && strings.HasPrefix(r.Key, prefix) {
				out = append(out, r)
			}
			return true
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func hasAnyPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Center is one registry center. It serves the wire protocol, owns its
// records (in memory, backed by bbolt), expires dead instances, mirrors
// every change to its peer and pushes changes to subscribers.
//
// Ownership: the committer goroutine is the only writer of records, the
// revision counter and the digests; it takes mu for writing only while it
// publishes a committed batch. Readers take mu for reading.
type Center struct {
	opts  CenterOptions
	log   *slog.Logger
	id    string
	store *store // nil: memory only
	clock *hlc
	// clockWarned is when a far-ahead version was last logged, per source
	// (client, peer).
	clockWarned [2]atomic.Int64
	metrics     *centerMetrics

	mu           sync.RWMutex
	recs         map[string]*Record // immutable values: replaced, never mutated
	rev          uint64             // last revision issued
	compactedRev uint64             // highest revision of a purged tombstone
	digests      digestTable
	subs         map[*subscriber]struct{}
	snaps        map[string][]*Record // shared snapshots at snapsRev, by prefix set (see liveUnder)
	snapsRev     uint64

	writes  chan *writeReq
	retries *retryTable // owned by the committer
	live    *liveness

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

	peerUp atomic.Bool
}

// NewCenter opens the data directory (creating it if needed), recovers the
// records and the center id, and returns a center ready to Start.
func NewCenter(opts CenterOptions) (*Center, error) {
	opts = opts.withDefaults()
	m, err := newCenterMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registry: metrics: %w", err)
	}
	c := &Center{
		opts:     opts,
		log:      opts.Logger,
		clock:    newHLC(nil),
		metrics:  m,
		recs:     make(map[string]*Record),
		subs:     make(map[*subscriber]struct{}),
		snaps:    make(map[string][]*Record),
		retries:  newRetryTable(),
		writes:   make(chan *writeReq, 4096),
		sessions: make(map[*session]struct{}),
		perAddr:  make(map[string]int),
		inbound:  semaphore.NewWeighted(int64(opts.MaxInbound)),
		outbound: semaphore.NewWeighted(int64(opts.MaxOutbound)),
	}
	if opts.Insecure && opts.Token != "" {
		return nil, fmt.Errorf("%w: Insecure with a Token: a center either authenticates writers or does not", ErrInvalid)
	}
	c.digests.init()
	var st persistedState
	if opts.DataDir != "" {
		c.store, st, err = openStore(opts.DataDir)
		if err != nil {
			return nil, err
		}
	} else {
		st.centerID = newCenterID()
	}
	c.id = st.centerID
	c.rev, c.compactedRev = st.rev, st.compactedRev
	c.live = newLiveness(c)
	ahead := 0
	for _, r := range st.records {
		c.recs[r.Key] = r
		c.digests.add(r)
		// Our own durable records move the clock even when far ahead: a
		// later write must order after them. Only new input is bounded.
		if r.Version.HLC > c.clock.limit(opts.MaxClockAhead) {
			ahead++
		}
		c.clock.Observe(r.Version.HLC)
		if r.Rev > c.rev {
			c.rev = r.Rev
		}
		// A center that just started gives every instance one full TTL to
		// heartbeat again before it may expire.
		if !r.Deleted && r.IsInstance() {
			c.live.upsert(r, 0, time.Now())
		}
	}
	c.metrics.records.Set(float64(len(c.recs)))
	if ahead > 0 {
		c.log.Warn("the store holds records stamped further ahead of the wall clock than MaxClockAhead; this center's versions follow them",
			"records", ahead, "clock", Version{HLC: c.clock.Now()}.Time())
	}
	return c, nil
}

// ID is the center's stable id (persisted in DataDir).
func (c *Center) ID() string { return c.id }

// Addr is the address the center listens on; nil before Start.
func (c *Center) Addr() net.Addr {
	if c.ln == nil {
		return nil
	}
	return c.ln.Addr()
}

// Rev is the last revision this center issued.
func (c *Center) Rev() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// PeerConnected reports whether the replication link to the peer is up.
func (c *Center) PeerConnected() bool { return c.peerUp.Load() }

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
	c.goFunc(c.acceptLoop)
	c.goFunc(c.commitLoop)
	c.goFunc(c.live.sweepLoop)
	c.goFunc(c.healthLoop)
	if c.opts.Peer != "" {
		c.goFunc(c.replicateLoop)
	}
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
	c.log.Info("center started", "id", c.id, "addr", ln.Addr().String(), "peer", c.opts.Peer, "records", len(c.recs), "rev", c.rev)
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
		if c.store != nil {
			err = c.store.close()
		}
		c.log.Info("center stopped", "id", c.id)
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
func (c *Center) Get(key string) (Record, error) {
	c.mu.RLock()
	r := c.recs[key]
	c.mu.RUnlock()
	if r == nil || r.Deleted {
		return Record{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return *r, nil
}

// List returns the live records under prefix, sorted by key.
func (c *Center) List(prefix string) []Record {
	ptrs := c.list(prefix)
	out := make([]Record, len(ptrs))
	for i, r := range ptrs {
		out[i] = *r
	}
	return out
}

// list is List without the copies (records are immutable once published).
func (c *Center) list(prefix string) []*Record {
	c.mu.RLock()
	out := make([]*Record, 0)
	for k, r := range c.recs {
		if !r.Deleted && strings.HasPrefix(k, prefix) {
			out = append(out, r)
		}
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// records returns every record, tombstones included, sorted by key (tests
// compare the two centers with it).
func (c *Center) records() []Record {
	c.mu.RLock()
	out := make([]Record, 0, len(c.recs))
	for _, r := range c.recs {
		out = append(out, *r)
	}
	c.mu.RUnlock()
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

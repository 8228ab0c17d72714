package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// Addrs are the centers of the pair (one or two). The client uses one at
	// a time and fails over to the next when it stops answering.
	Addrs []string
	// Token for centers that require one.
	Token string
	// TLS, if set, dials with TLS.
	TLS *tls.Config
	// Role declared in the handshake. Default RoleInstance.
	Role Role
	// Name identifies the client in the centers' logs.
	Name string
	// DialTimeout bounds each connection attempt. Default 2s.
	DialTimeout time.Duration
	// KeepAlive of the connection (see DialOptions). Default 2s, so that a
	// silent center is given up within about 6s; a center that dies or
	// closes is noticed at once.
	KeepAlive time.Duration
	// Logger receives the client's logs. Default: discard.
	Logger *slog.Logger
}

// Client is the registration SDK: it registers instances and heartbeats
// them in the background, writes and reads key/values and subscribes, over
// one center of the pair at a time, failing over to the other. After a
// failover or reconnect, and whenever a center reports it does not know an
// instance (it expired there or was never replicated), the client registers
// the instance again.
type Client struct {
	opts ClientOptions
	log  *slog.Logger

	mu      sync.Mutex
	conn    *Conn
	next    int
	regs    map[string]*registration
	closed  bool
	kick    chan struct{} // wake the heartbeat loop (new registration)
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	dialing sync.Mutex

	// seen is the highest version any of the client's connections has
	// been answered with; each write carries it, so that the client's
	// writes keep their order across a failover (see Conn.seen).
	seen atomic.Uint64
}

type registration struct {
	in   Instance
	opts RegisterOptions
	stop chan struct{} // closed (under Client.mu) when the registration ends

	// sending is held while the heartbeat loop re-registers the instance,
	// so that a deregistration waits for that Register to be answered and
	// its Delete lands after it instead of being overtaken by it.
	sending sync.Mutex
}

func (r *registration) ended() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// NewClient returns a client; it connects on first use.
func NewClient(opts ClientOptions) (*Client, error) {
	if len(opts.Addrs) == 0 {
		return nil, fmt.Errorf("%w: no center address", ErrInvalid)
	}
	if opts.Role == "" {
		opts.Role = RoleInstance
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{opts: opts, log: opts.Logger, regs: make(map[string]*registration), kick: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.heartbeatLoop() }()
	return c, nil
}

// Close stops heartbeats and closes the connection. Registered instances are
// not deregistered: they expire after their TTL (or their disconnect grace).
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if conn != nil {
		conn.Close()
	}
	return nil
}

// Center returns the id of the center in use ("" if not connected).
func (c *Client) Center() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ""
	}
	return c.conn.CenterID()
}

// connect returns the live connection, dialing the centers in turn.
func (c *Client) connect(ctx context.Context) (*Conn, error) {
	c.dialing.Lock()
	defer c.dialing.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if c.conn != nil && c.conn.Err() == nil {
		conn := c.conn
		c.mu.Unlock()
		return conn, nil
	}
	start := c.next
	c.mu.Unlock()
	var errs []error
	for i := range c.opts.Addrs {
		idx := (start + i) % len(c.opts.Addrs)
		addr := c.opts.Addrs[idx]
		dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
		conn, err := Dial(dctx, addr, DialOptions{Role: c.opts.Role, Token: c.opts.Token, TLS: c.opts.TLS, KeepAlive: c.opts.KeepAlive, Name: c.opts.Name, seen: &c.seen})
		cancel()
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return nil, ErrClosed
		}
		c.conn, c.next = conn, idx
		c.mu.Unlock()
		c.log.Info("connected to center", "addr", addr, "center", conn.CenterID())
		c.wakeHeartbeats()
		return conn, nil
	}
	// Centers that answered and refused (a wrong token, say) were available:
	// say what they said rather than that none could be reached.
	if !slices.ContainsFunc(errs, errIsConn) {
		return nil, errors.Join(errs...)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}

// drop abandons a failed connection; the next use tries the other center.
func (c *Client) drop(conn *Conn) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
		c.next = (c.next + 1) % len(c.opts.Addrs)
	}
	c.mu.Unlock()
	conn.Close()
}

// do runs f on a connection, failing over once per center on a connection
// error.
func (c *Client) do(ctx context.Context, f func(*Conn) error) error {
	var err error
	for range len(c.opts.Addrs) + 1 {
		var conn *Conn
		conn, err = c.connect(ctx)
		if err != nil {
			return err
		}
		err = f(conn)
		if err == nil || !errIsConn(err) || ctx.Err() != nil {
			return err
		}
		c.drop(conn)
	}
	return err
}

// Register registers an instance and keeps it alive with heartbeats until
// Deregister, Close, or the end of ctx (which also deregisters it, best
// effort). It returns once a center has made the registration durable.
func (c *Client) Register(ctx context.Context, in Instance, opts RegisterOptions) error {
	in, err := in.Normalize()
	if err != nil {
		return err
	}
	wid := wire.NewWID() // the same on the retry at the other center
	if err := c.do(ctx, func(conn *Conn) error { _, err := conn.register(ctx, in, opts, wid); return err }); err != nil {
		return err
	}
	r := &registration{in: in, opts: opts, stop: make(chan struct{})}
	key := in.Key()
	c.mu.Lock()
	if old := c.regs[key]; old != nil {
		close(old.stop)
	}
	c.regs[key] = r
	c.mu.Unlock()
	c.wakeHeartbeats()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
			c.deregister(dctx, key, r)
			cancel()
		case <-r.stop:
		case <-c.ctx.Done():
		}
	}()
	return nil
}

// Deregister stops heartbeating an instance and deletes it.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	key := InstanceKey(service, id)
	c.mu.Lock()
	r := c.regs[key]
	c.mu.Unlock()
	return c.deregister(ctx, key, r)
}

func (c *Client) deregister(ctx context.Context, key string, r *registration) error {
	if r != nil {
		c.mu.Lock()
		current := c.regs[key] == r
		if current {
			delete(c.regs, key)
			close(r.stop)
		}
		c.mu.Unlock()
		if !current {
			// A newer Register of the same instance owns the key now (or
			// this registration was already deregistered).
			return nil
		}
		// A re-registration already on the wire is answered before the
		// Delete goes out; any later one sees the registration ended.
		// The lock is a barrier only: holding it through the Delete would
		// stall the heartbeats of every other instance behind it.
		r.sending.Lock()
		r.sending.Unlock()
	}
	wid := wire.NewWID()
	err := c.do(ctx, func(conn *Conn) error { _, err := conn.delete(ctx, key, wid); return err })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (c *Client) wakeHeartbeats() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// heartbeatLoop heartbeats every registered instance at a third of the
// smallest TTL, re-registering those a center does not know, and all of them
// after a change of connection.
func (c *Client) heartbeatLoop() {
	var lastConn *Conn
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		interval := time.Second
		regs := make([]*registration, 0, len(c.regs))
		for _, r := range c.regs {
			regs = append(regs, r)
			interval = min(interval, r.in.TTL/3)
		}
		c.mu.Unlock()
		if len(regs) > 0 {
			if err := c.heartbeatOnce(regs, &lastConn, interval); err != nil {
				c.log.Warn("heartbeat", "err", err)
				interval = min(interval, 200*time.Millisecond)
			}
		}
		timer.Reset(interval)
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-timer.C:
		}
	}
}

func (c *Client) heartbeatOnce(regs []*registration, lastConn **Conn, interval time.Duration) error {
	ctx, cancel := context.WithTimeout(c.ctx, max(interval, time.Second))
	defer cancel()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	byKey := make(map[string]*registration, len(regs))
	keys := make([]string, 0, len(regs))
	for _, r := range regs {
		byKey[r.in.Key()] = r
		keys = append(keys, r.in.Key())
	}
	if conn != *lastConn {
		// A new connection, possibly to the other center: assert every
		// instance there, in case replication had not carried it.
		*lastConn = conn
		return c.reregister(ctx, conn, keys, byKey)
	}
	missing, err := conn.Heartbeat(ctx, keys...)
	if err != nil {
		if errIsConn(err) {
			c.drop(conn)
		}
		return err
	}
	return c.reregister(ctx, conn, missing, byKey)
}

func (c *Client) reregister(ctx context.Context, conn *Conn, keys []string, byKey map[string]*registration) error {
	for _, k := range keys {
		r := byKey[k]
		if r == nil {
			continue
		}
		if r.ended() {
			continue
		}
		r.sending.Lock()
		if r.ended() {
			r.sending.Unlock()
			continue
		}
		_, err := conn.Register(ctx, r.in, r.opts)
		r.sending.Unlock()
		if err != nil {
			if errIsConn(err) {
				c.drop(conn)
			}
			return err
		}
		c.log.Info("re-registered instance", "key", k, "center", conn.CenterID())
	}
	return nil
}

// Put writes a plain key/value.
func (c *Client) Put(ctx context.Context, key string, value []byte) (Version, error) {
	var v Version
	wid := wire.NewWID() // the same on the retry at the other center
	err := c.do(ctx, func(conn *Conn) (err error) { v, err = conn.put(ctx, key, value, wid); return err })
	return v, err
}

// Delete deletes a key.
func (c *Client) Delete(ctx context.Context, key string) (Version, error) {
	var v Version
	wid := wire.NewWID()
	err := c.do(ctx, func(conn *Conn) (err error) { v, err = conn.delete(ctx, key, wid); return err })
	return v, err
}

// Get reads a record from a center (the slow path, for tools).
func (c *Client) Get(ctx context.Context, key string) (Record, error) {
	var r Record
	err := c.do(ctx, func(conn *Conn) (err error) { r, err = conn.Get(ctx, key); return err })
	return r, err
}

// List reads the live records under prefix from a center.
func (c *Client) List(ctx context.Context, prefix string) ([]Record, error) {
	var rs []Record
	err := c.do(ctx, func(conn *Conn) (err error) { rs, err = conn.List(ctx, prefix); return err })
	return rs, err
}

// ClientSubscription is a subscription that survives failover: after a
// reconnect to the same center it resumes from the last revision; on the
// other center it starts with a fresh snapshot (revisions are per center).
type ClientSubscription struct {
	c        *Client
	prefixes []string
	sub      *Subscription
	conn     *Conn
	center   string
	rev      uint64
}

// Subscribe subscribes to prefixes across failovers. Batches come from Next.
func (c *Client) Subscribe(ctx context.Context, prefixes []string) (*ClientSubscription, error) {
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("%w: subscribe needs at least one prefix", ErrInvalid)
	}
	s := &ClientSubscription{c: c, prefixes: append([]string(nil), prefixes...)}
	if err := s.resubscribe(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ClientSubscription) resubscribe(ctx context.Context) error {
	return s.c.do(ctx, func(conn *Conn) error {
		from := uint64(0)
		if conn.CenterID() == s.center {
			from = s.rev
		}
		sub, err := conn.Subscribe(ctx, s.prefixes, from)
		if err != nil {
			return err
		}
		s.sub, s.conn = sub, conn
		return nil
	})
}

// Next returns the next batch, reconnecting as needed. A batch with Snapshot
// set replaces everything under its prefixes; CenterID says which center the
// batch (and its Rev) comes from.
func (s *ClientSubscription) Next(ctx context.Context) (Batch, error) {
	for {
		if s.sub == nil {
			if err := s.resubscribe(ctx); err != nil {
				if ctx.Err() != nil || errors.Is(err, ErrClosed) {
					return Batch{}, err
				}
				select {
				case <-time.After(100 * time.Millisecond):
				case <-ctx.Done():
					return Batch{}, ctx.Err()
				}
				continue
			}
		}
		b, err := s.sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return Batch{}, err
			}
			s.c.drop(s.conn)
			s.sub, s.conn = nil, nil
			continue
		}
		s.center, s.rev = b.CenterID, b.Rev
		return b, nil
	}
}

// Close ends the subscription.
func (s *ClientSubscription) Close(ctx context.Context) error {
	if s.sub == nil {
		return nil
	}
	err := s.sub.Close(ctx)
	s.sub = nil
	return err
}

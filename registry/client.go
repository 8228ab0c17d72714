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
	// KeepOnClose makes Close leave the instances registered: they expire
	// after their TTL unless someone registers them again. For a client that
	// registers on behalf of others and hands over to its successor (the
	// host agent); a service registering itself wants the default, false:
	// Close deregisters.
	KeepOnClose bool
	// DeregisterTimeout bounds the deregistration Close makes of the
	// instances the client still holds, and the one made when a Register's
	// context ends. Default 2s.
	DeregisterTimeout time.Duration
	// Logger receives the client's logs. Default: discard.
	Logger *slog.Logger
}

// Client is the registration SDK: it registers instances and heartbeats
// them in the background, writes and reads key/values and subscribes, over
// one center of the pair at a time, failing over to the other. After a
// failover or reconnect, and whenever a center reports it does not know an
// instance (it expired there or was never replicated), the client registers
// the instance again.
//
// A clean shutdown leaves nothing behind: Close deregisters every instance
// the client still holds before it stops (see Close), and so does the end
// of a Register's context for that instance.
type Client struct {
	opts ClientOptions
	log  *slog.Logger

	mu   sync.Mutex
	conn *Conn
	next int
	regs map[string]*registration
	// closing is set when Close begins: no new registration is taken
	// from then on, and Close deregisters those it found in regs.
	closing bool
	// closed is set once Close has deregistered: no new connection.
	closed bool
	// registering counts the Registers past the closing check whose
	// registration is not yet in regs; Close waits for them (a Register
	// that finds closing set when it is answered deletes its instance).
	registering sync.WaitGroup
	// regsWG counts the goroutines that wait for a Register's context to
	// end; Close waits for them, since one may be deregistering.
	regsWG  sync.WaitGroup
	kick    chan struct{} // wake the heartbeat loop (new registration)
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the heartbeat loop
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
	if opts.DeregisterTimeout == 0 {
		opts.DeregisterTimeout = 2 * time.Second
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

// Close deregisters the instances the client still holds (unless
// ClientOptions.KeepOnClose), then stops the heartbeats and closes the
// connection. The deregistration is bounded by
// ClientOptions.DeregisterTimeout (failing over between the centers like
// any write); Close returns the deletions that failed, and an instance
// whose deletion failed expires after its TTL. A re-registration the
// heartbeat loop has on the wire is answered before the deletion is sent,
// so it cannot bring the instance back. A Register that returns after Close
// has begun deletes its instance itself and returns ErrClosed. Close is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	regs := c.regs
	c.regs = make(map[string]*registration)
	for _, r := range regs {
		close(r.stop)
	}
	c.mu.Unlock()
	if c.opts.KeepOnClose {
		regs = nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.opts.DeregisterTimeout)
	defer cancel()
	var errs []error
	for key, r := range regs {
		if err := c.deleteRegistration(ctx, key, r); err != nil {
			errs = append(errs, fmt.Errorf("deregister %s: %w", key, err))
		}
	}
	// A Register answered after closing was set deletes its own instance;
	// a Register's context that ended before Close has its goroutine
	// deleting the instance. Both need the connection: wait for them
	// before closing it, within the same bound.
	waitUntil(ctx, &c.registering)
	waitUntil(ctx, &c.regsWG)

	c.mu.Lock()
	c.closed = true
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	if conn != nil {
		conn.Close()
	}
	return errors.Join(errs...)
}

// waitUntil waits for wg, or until ctx ends.
func waitUntil(ctx context.Context, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
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
	return nil, &unavailableError{errs: errs}
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
// Deregister, Close, or the end of ctx; Close and the end of ctx also
// deregister it (bounded by ClientOptions.DeregisterTimeout). It returns
// once a center has made the registration durable.
func (c *Client) Register(ctx context.Context, in Instance, opts RegisterOptions) error {
	in, err := in.Normalize()
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	c.registering.Add(1)
	c.mu.Unlock()
	defer c.registering.Done()
	wid := wire.NewWID() // the same on the retry at the other center
	key := in.Key()
	if err := c.do(ctx, func(conn *Conn) error { _, err := conn.register(ctx, in, opts, wid); return err }); err != nil {
		if ctx.Err() != nil {
			c.undoRegister(key)
		}
		return err
	}
	r := &registration{in: in, opts: opts, stop: make(chan struct{})}
	c.mu.Lock()
	if c.closing {
		// Close took the registrations before this one was answered: it
		// waits for this deletion before it closes the connection.
		c.mu.Unlock()
		if c.opts.KeepOnClose {
			return ErrClosed
		}
		dctx, cancel := context.WithTimeout(context.Background(), c.opts.DeregisterTimeout)
		defer cancel()
		if err := c.deleteRegistration(dctx, key, nil); err != nil {
			return fmt.Errorf("%w (and deregistering %s: %w)", ErrClosed, key, err)
		}
		return ErrClosed
	}
	if old := c.regs[key]; old != nil {
		close(old.stop)
	}
	c.regs[key] = r
	c.regsWG.Add(1)
	c.mu.Unlock()
	c.wakeHeartbeats()
	go func() {
		defer c.regsWG.Done()
		select {
		case <-ctx.Done():
			// Not derived from the client's context: Close waits for
			// this deletion instead of cutting it short.
			dctx, cancel := context.WithTimeout(context.Background(), c.opts.DeregisterTimeout)
			if err := c.deregister(dctx, key, r); err != nil {
				c.log.Warn("deregister at the end of the registration's context", "key", key, "err", err)
			}
			cancel()
		case <-r.stop:
		}
	}()
	return nil
}

// undoRegister deletes key after a Register whose context ended before
// the center answered: the center may have made the registration durable
// all the same, and nothing would heartbeat or deregister it. It is left
// alone if another registration of the key is current. The deletion runs
// in the background (Close waits for it), unless Close has begun, which
// waits for this Register instead.
func (c *Client) undoRegister(key string) {
	c.mu.Lock()
	if c.regs[key] != nil || c.opts.KeepOnClose && c.closing {
		c.mu.Unlock()
		return
	}
	del := func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.DeregisterTimeout)
		defer cancel()
		if err := c.deleteRegistration(ctx, key, nil); err != nil {
			c.log.Warn("deregister after an interrupted Register", "key", key, "err", err)
		}
	}
	if c.closing {
		c.mu.Unlock()
		del()
		return
	}
	c.regsWG.Add(1)
	c.mu.Unlock()
	go func() { defer c.regsWG.Done(); del() }()
}

// Deregister stops heartbeating an instance and deletes it.
func (c *Client) Deregister(ctx context.Context, service, id string) error {
	key := InstanceKey(service, id)
	c.mu.Lock()
	r := c.regs[key]
	c.mu.Unlock()
	return c.deregister(ctx, key, r)
}

// deregister ends registration r of key, if it is still the current one,
// and deletes the instance; with r nil it deletes key.
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
			// A newer Register of the same instance owns the key now, or
			// this registration was already deregistered (or taken by
			// Close, which deletes it).
			return nil
		}
	}
	return c.deleteRegistration(ctx, key, r)
}

// deleteRegistration deletes the instance of an ended registration r (its
// stop closed; nil for none): once the heartbeat loop's re-registration of
// it, if one is on the wire, has been answered, so that the Delete lands
// after it instead of being overtaken by it. Any later re-registration
// sees the registration ended and is not sent.
func (c *Client) deleteRegistration(ctx context.Context, key string, r *registration) error {
	if r != nil {
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

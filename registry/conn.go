package registry

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DialOptions configures a connection to one center.
type DialOptions struct {
	// Role declared in the handshake. Default RoleAgent.
	Role Role
	// Token for centers that require one (needed to write).
	Token string
	// TLS, if set, dials with TLS.
	TLS *tls.Config
	// MaxFrame is the largest frame accepted. Default DefaultMaxFrame.
	MaxFrame int
	// KeepAlive is the ping interval; the connection is considered dead
	// after 3*KeepAlive without any frame from the center. Default 10s.
	KeepAlive time.Duration
	// Name identifies the client in the center's logs.
	Name string

	// seen, if set, is shared by the connections of one Client: the
	// highest version any of them has been answered with (see Conn.seen).
	seen *atomic.Uint64

	// CenterID, for role peer, is the dialing center's id.
	CenterID string
}

// Conn is a connection to one center. Replies and pushes share it; it is
// safe for concurrent use. A Conn does not reconnect: when Done is closed,
// dial again (Client does this, failing over between the pair).
type Conn struct {
	nc       net.Conn
	opts     DialOptions
	centerID string
	maxFrame int
	welcome  wire.WelcomeMsg
	out      *wire.Outbox
	nextID   atomic.Uint64

	// seen is the highest version this client has been answered with.
	// Every write carries it (After), and the center moves its clock past
	// it before stamping the write, so a client's writes are ordered as it
	// made them even when a failover sends the next one to the other
	// center, whose clock may be behind.
	seen    *atomic.Uint64
	ownSeen atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]*call
	subs    map[uint64]*Subscription
	err     error // why the connection closed
	closed  chan struct{}
	wg      sync.WaitGroup
}

type call struct {
	ch      chan callResult // capacity 1
	collect bool            // accumulate multi-frame record replies
	recs    []Record
}

type callResult struct {
	f    wire.Frame
	recs []Record
	err  error
}

// Dial connects to a center at addr and performs the handshake.
func Dial(ctx context.Context, addr string, opts DialOptions) (*Conn, error) {
	if opts.Role == "" {
		opts.Role = RoleAgent
	}
	if opts.MaxFrame == 0 {
		opts.MaxFrame = DefaultMaxFrame
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = 10 * time.Second
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		// The net error names the address ("dial tcp ADDR: ...").
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if opts.TLS != nil {
		cfg := opts.TLS
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("%w: tls handshake with %s: %v", ErrUnavailable, addr, err)
		}
		nc = tc
	}
	c := &Conn{
		nc:       nc,
		opts:     opts,
		maxFrame: opts.MaxFrame,
		out:      wire.NewOutbox(0, nil),
		pending:  make(map[uint64]*call),
		subs:     make(map[uint64]*Subscription),
		closed:   make(chan struct{}),
		seen:     opts.seen,
	}
	if c.seen == nil {
		c.seen = &c.ownSeen
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	if err := c.handshake(ctx, addr, br); err != nil {
		nc.Close()
		return nil, err
	}
	c.wg.Add(3)
	go func() { defer c.wg.Done(); c.out.Run(nc) }()
	go func() { defer c.wg.Done(); c.readLoop(br) }()
	go func() { defer c.wg.Done(); c.keepAlive() }()
	return c, nil
}

// handshake sends the hello and reads the welcome. Something that is not
// a shmreg center at addr shows here: it answers in text (an HTTP server
// that replies to the garbage it got, a text protocol), or it says nothing
// (an HTTP server waiting for the end of a request line), and both are said
// as such rather than as a frame size or a bare timeout.
func (c *Conn) handshake(ctx context.Context, addr string, br *bufio.Reader) error {
	start := time.Now()
	deadline := start.Add(wire.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.nc.SetDeadline(deadline)
	defer c.nc.SetDeadline(time.Time{})
	b, err := wire.EncodeFrame(wire.MsgHello, 1, &wire.HelloMsg{Version: ProtocolVersion, Role: c.opts.Role, Token: c.opts.Token, CenterID: c.opts.CenterID, Name: c.opts.Name})
	if err != nil {
		return err
	}
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("%w: handshake with %s: %v", ErrUnavailable, addr, err)
	}
	p, err := wire.ReadFrame(br, c.maxFrame)
	var text *wire.NotProtocolError
	var ne net.Error
	switch {
	case errors.As(err, &text):
		return &notCenterError{addr: addr, why: fmt.Sprintf("it answered %q...", text.Head[:])}
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %s did not answer the handshake within %v (is it a shmreg center?)", ErrUnavailable, addr, deadline.Sub(start).Round(100*time.Millisecond))
	case err != nil:
		return fmt.Errorf("%w: handshake with %s: %v", ErrUnavailable, addr, err)
	}
	f, err := wire.DecodeFrame(p)
	if err != nil {
		return err
	}
	switch f.Type {
	case wire.MsgWelcome:
		if err := wire.DecodeBody(f.Body, &c.welcome); err != nil {
			return err
		}
		c.centerID = c.welcome.CenterID
		if c.welcome.MaxFrame > 0 && c.welcome.MaxFrame < c.maxFrame {
			c.maxFrame = c.welcome.MaxFrame
		}
		return nil
	case wire.MsgError:
		return remoteErr(f.Body)
	}
	return fmt.Errorf("%w: handshake: unexpected frame type %d", ErrProtocol, f.Type)
}

// notCenterError: the address answered, but not in the shmreg protocol.
// The client treats it as an unavailable center (it tries the other one).
type notCenterError struct{ addr, why string }

func (e *notCenterError) Error() string {
	return fmt.Sprintf("%v: %s is not a shmreg center (%s)", ErrUnavailable, e.addr, e.why)
}

func (e *notCenterError) Unwrap() []error { return []error{ErrUnavailable, ErrProtocol} }

// lostError: the connection to one center failed. It is ErrUnavailable
// for that center only (the other may well be up), so it does not say "no
// center available".
type lostError struct {
	center string
	err    error
}

func (e *lostError) Error() string {
	return fmt.Sprintf("registry: connection to center %s lost: %v", e.center, e.err)
}

func (e *lostError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// unavailableError is the failure of every center a Client tried: "no
// center available" once, then what each said, the sentinel's words
// dropped from each.
type unavailableError struct{ errs []error }

func (e *unavailableError) Error() string {
	var b strings.Builder
	b.WriteString(ErrUnavailable.Error())
	for i, err := range e.errs {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimPrefix(err.Error(), ErrUnavailable.Error()+": "))
	}
	return b.String()
}

func (e *unavailableError) Unwrap() []error { return append([]error{ErrUnavailable}, e.errs...) }

func remoteErr(body []byte) error {
	var m wire.ErrorMsg
	if err := wire.DecodeBody(body, &m); err != nil {
		return err
	}
	return &RemoteError{Code: m.Code, Message: m.Message}
}

// CenterID is the id of the center this connection reached.
func (c *Conn) CenterID() string { return c.centerID }

// Done is closed when the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.closed }

// Err is why the connection closed (nil while open).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection; pending calls and subscriptions end with
// ErrClosed.
func (c *Conn) Close() error {
	c.shutdown(ErrClosed)
	c.wg.Wait()
	return nil
}

func (c *Conn) shutdown(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending, subs := c.pending, c.subs
	c.pending, c.subs = map[uint64]*call{}, map[uint64]*Subscription{}
	close(c.closed)
	c.mu.Unlock()
	c.out.Close(nil)
	c.nc.Close()
	for _, p := range pending {
		p.ch <- callResult{err: err}
	}
	for _, s := range subs {
		s.fail(err)
	}
}

func (c *Conn) readLoop(br *bufio.Reader) {
	idle := 3 * c.opts.KeepAlive
	for {
		c.nc.SetReadDeadline(time.Now().Add(idle))
		p, err := wire.ReadFrame(br, c.maxFrame)
		if err != nil {
			c.shutdown(&lostError{center: c.centerID, err: err})
			return
		}
		f, err := wire.DecodeFrame(p)
		if err != nil {
			c.shutdown(err)
			return
		}
		if f.ID == 0 {
			switch f.Type {
			case wire.MsgPush:
				var m wire.PushMsg
				if err := wire.DecodeBody(f.Body, &m); err != nil {
					c.shutdown(err)
					return
				}
				c.mu.Lock()
				s := c.subs[m.SubID]
				c.mu.Unlock()
				if s != nil {
					s.deliver(m)
				}
			case wire.MsgError:
				c.shutdown(remoteErr(f.Body))
				return
			case wire.MsgPing:
				c.sendFrame(wire.MsgPong, 0, nil)
			}
			continue
		}
		c.mu.Lock()
		cl := c.pending[f.ID]
		if cl != nil && !(cl.collect && f.Type == wire.MsgRecords) {
			delete(c.pending, f.ID)
		}
		c.mu.Unlock()
		if cl == nil {
			continue // a reply to a call that gave up
		}
		if cl.collect && f.Type == wire.MsgRecords {
			var m wire.RecordsMsg
			if err := wire.DecodeBody(f.Body, &m); err != nil {
				c.shutdown(err)
				return
			}
			cl.recs = append(cl.recs, m.Records...)
			if m.More {
				continue
			}
			c.mu.Lock()
			delete(c.pending, f.ID)
			c.mu.Unlock()
		}
		cl.ch <- callResult{f: f, recs: cl.recs}
	}
}

func (c *Conn) keepAlive() {
	t := time.NewTicker(c.opts.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.sendFrame(wire.MsgPing, 0, nil)
		case <-c.closed:
			return
		}
	}
}

func (c *Conn) sendFrame(t wire.MsgType, id uint64, body any) error {
	b, err := wire.EncodeFrame(t, id, body)
	if err != nil {
		return fmt.Errorf("registry: encode: %w", err)
	}
	if len(b)-wire.FrameHeaderLen > c.maxFrame {
		return fmt.Errorf("%w: request of %d bytes exceeds the frame limit %d", ErrTooLarge, len(b), c.maxFrame)
	}
	if err := c.out.Enqueue(b); err != nil {
		if e := c.Err(); e != nil {
			return e
		}
		return err
	}
	return nil
}

// roundTrip sends a request and waits for its reply frame. An error frame
// becomes a *RemoteError.
func (c *Conn) roundTrip(ctx context.Context, t wire.MsgType, body any, collect bool) (callResult, error) {
	id := c.nextID.Add(1)
	cl := &call{ch: make(chan callResult, 1), collect: collect}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return callResult{}, err
	}
	c.pending[id] = cl
	c.mu.Unlock()
	if err := c.sendFrame(t, id, body); err != nil {
		c.forget(id)
		return callResult{}, err
	}
	select {
	case r := <-cl.ch:
		if r.err != nil {
			return r, r.err
		}
		if r.f.Type == wire.MsgError {
			return r, remoteErr(r.f.Body)
		}
		return r, nil
	case <-ctx.Done():
		c.forget(id)
		return callResult{}, ctx.Err()
	}
}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// call sends a request and decodes a reply of type want into out (if set).
func (c *Conn) call(ctx context.Context, t wire.MsgType, body any, want wire.MsgType, out any) error {
	r, err := c.roundTrip(ctx, t, body, false)
	if err != nil {
		return err
	}
	if r.f.Type != want {
		return fmt.Errorf("%w: reply type %d, want %d", ErrProtocol, r.f.Type, want)
	}
	if out != nil {
		return wire.DecodeBody(r.f.Body, out)
	}
	return nil
}

// Ping round-trips a keep-alive.
func (c *Conn) Ping(ctx context.Context) error {
	return c.call(ctx, wire.MsgPing, nil, wire.MsgPong, nil)
}

// Put writes a plain key/value (not under svc/). It returns once the center
// has made the write durable.
func (c *Conn) Put(ctx context.Context, key string, value []byte) (Version, error) {
	return c.put(ctx, key, value, wire.NewWID())
}

// put is Put with the write's id: every attempt of one write carries the
// same (see retry.go).
func (c *Conn) put(ctx context.Context, key string, value []byte, wid string) (Version, error) {
	if err := wire.ValidateKV(key, value); err != nil {
		return Version{}, err
	}
	var ok wire.OKMsg
	err := c.call(ctx, wire.MsgPut, &wire.PutMsg{Key: key, Value: value, After: c.seen.Load(), WID: wid}, wire.MsgOK, &ok)
	return c.saw(ok.Version), err
}

// Delete deletes a key (a plain key or an instance key); ErrNotFound if the
// center does not hold it.
func (c *Conn) Delete(ctx context.Context, key string) (Version, error) {
	return c.delete(ctx, key, wire.NewWID())
}

func (c *Conn) delete(ctx context.Context, key, wid string) (Version, error) {
	// A key written before control characters were refused can be deleted.
	if err := wire.ValidateStoredKey(key); err != nil {
		return Version{}, err
	}
	var ok wire.OKMsg
	err := c.call(ctx, wire.MsgDelete, &wire.KeyMsg{Key: key, After: c.seen.Load(), WID: wid}, wire.MsgOK, &ok)
	v := c.saw(ok.Version)
	if err == nil && ok.NotFound {
		err = fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return v, err
}

// RegisterOptions tunes one registration.
type RegisterOptions struct {
	// TieToConn makes the instance expire when this connection drops (after
	// the center's DisconnectGrace), as well as on a missed TTL.
	TieToConn bool
}

// Register writes an instance; the caller must then heartbeat it (Client
// does this for you).
func (c *Conn) Register(ctx context.Context, in Instance, opts RegisterOptions) (Version, error) {
	return c.register(ctx, in, opts, wire.NewWID())
}

func (c *Conn) register(ctx context.Context, in Instance, opts RegisterOptions, wid string) (Version, error) {
	in, err := in.Normalize()
	if err != nil {
		return Version{}, err
	}
	var ok wire.OKMsg
	err = c.call(ctx, wire.MsgRegister, &wire.RegisterMsg{Instance: in, TieToConn: opts.TieToConn, After: c.seen.Load(), WID: wid}, wire.MsgOK, &ok)
	return c.saw(ok.Version), err
}

// saw records the version a write was answered with (see Conn.seen).
func (c *Conn) saw(v Version) Version {
	for {
		old := c.seen.Load()
		if v.HLC <= old || c.seen.CompareAndSwap(old, v.HLC) {
			return v
		}
	}
}

// Heartbeat renews the given instance keys; missing lists those the center
// does not know (expired or never registered there): re-register them.
func (c *Conn) Heartbeat(ctx context.Context, keys ...string) (missing []string, err error) {
	var ack wire.HeartbeatAckMsg
	err = c.call(ctx, wire.MsgHeartbeat, &wire.HeartbeatMsg{Keys: keys}, wire.MsgHeartbeatAck, &ack)
	return ack.Missing, err
}

// Get reads one live record from the center (ErrNotFound if absent).
func (c *Conn) Get(ctx context.Context, key string) (Record, error) {
	var m wire.RecordsMsg
	if err := c.call(ctx, wire.MsgGet, &wire.KeyMsg{Key: key}, wire.MsgRecords, &m); err != nil {
		return Record{}, err
	}
	if len(m.Records) != 1 {
		return Record{}, fmt.Errorf("%w: get returned %d records", ErrProtocol, len(m.Records))
	}
	return m.Records[0], nil
}

// List reads every live record under prefix, sorted by key.
func (c *Conn) List(ctx context.Context, prefix string) ([]Record, error) {
	r, err := c.roundTrip(ctx, wire.MsgList, &wire.ListMsg{Prefix: prefix}, true)
	if err != nil {
		return nil, err
	}
	return r.recs, nil
}

// MaxFrame is the largest frame this connection may send.
func (c *Conn) MaxFrame() int { return c.maxFrame }

// ---- peer operations (for the replicator of registry/pair; a connection
// not in role peer is refused them) ----

// Digests asks for the center's anti-entropy digests.
func (c *Conn) Digests(ctx context.Context) ([]uint64, error) {
	var m wire.DigestsMsg
	err := c.call(ctx, wire.MsgDigests, nil, wire.MsgDigestsReply, &m)
	return m.Digests, err
}

// Bucket fetches every record of one anti-entropy bucket.
func (c *Conn) Bucket(ctx context.Context, b int) ([]Record, error) {
	var out []Record
	after := ""
	for {
		var m wire.RecordsMsg
		if err := c.call(ctx, wire.MsgBucket, &wire.BucketMsg{Bucket: b, After: after}, wire.MsgRecords, &m); err != nil {
			return nil, err
		}
		out = append(out, m.Records...)
		if !m.More || len(m.Records) == 0 {
			return out, nil
		}
		after = m.Records[len(m.Records)-1].Key
	}
}

// Replicate sends records; the center applies those newer than its own.
func (c *Conn) Replicate(ctx context.Context, recs []*Record) error {
	return c.call(ctx, wire.MsgReplicate, &wire.RecordsOut{Records: recs}, wire.MsgOK, nil)
}

// Touch forwards heartbeats received by the other center.
func (c *Conn) Touch(keys []string) error {
	return c.sendFrame(wire.MsgTouch, 0, &wire.TouchMsg{Keys: keys})
}

// errIsConn reports whether err means the connection (not the request)
// failed, or the center cannot serve now (its store fails), so that a
// client should fail over.
func errIsConn(err error) bool {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Code == wire.CodeUnavailable
	}
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) || errors.Is(err, ErrProtocol)
}

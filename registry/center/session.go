package center

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// session is the center's side of one connection. One goroutine reads and
// dispatches frames (reads and heartbeats inline, writes through the
// committer, whose callback replies), one writes queued frames, and one per
// subscription pushes batches. A frame that is malformed, oversized or not
// allowed for the connection gets an error frame and closes this connection
// only.
type session struct {
	c    *Center
	nc   net.Conn
	id   uint64
	addr string // remote IP, for the per-address connection limit
	role wire.Role
	// authed: the connection presented the token or a verified client
	// certificate (or the center is Insecure); it may write.
	authed bool
	// peerOK: it may act as the peer (authed, or the center has
	// InsecurePeers).
	peerOK   bool
	name     string
	maxFrame int // largest frame it may send: a hello's until the handshake, then a client's or the peer's

	out  *wire.Outbox
	done <-chan struct{} // closed when the connection is closed

	subMu sync.Mutex
	subs  map[uint64]*subscriber
}

const (
	handshakeTimeout = wire.HandshakeTimeout
	maxPrefixes      = 1024
	// maxHelloFrame caps the first frame: a hello is a few short strings,
	// and nobody has been authenticated yet to send more.
	maxHelloFrame = 8 << 10
	// maxClientFrame caps the frames of every connection but the peer's:
	// the largest request of a client is a subscription with maxPrefixes
	// prefixes of MaxKeyLen bytes, or a heartbeat of a few thousand keys
	// (a value is at most MaxValueLen). Only the peer sends batches of
	// records, up to MaxFrame.
	maxClientFrame = 1 << 20
	// connReadBuf is the size of a connection's read buffer: small, because
	// every idle agent holds one, and a frame larger than it is read
	// straight into its own memory anyway. (Writes need no buffer of their
	// own: see wire.Outbox.)
	connReadBuf = 4 << 10
)

func newSession(c *Center, nc net.Conn) *session {
	s := &session{
		c:        c,
		nc:       nc,
		id:       c.nextConn.Add(1),
		addr:     remoteIP(nc),
		maxFrame: maxHelloFrame,
		subs:     make(map[uint64]*subscriber),
	}
	s.out = wire.NewOutbox(c.opts.MaxConnQueue, c.outbound)
	s.out.SetWriteTimeout(c.opts.WriteTimeout)
	s.done = s.out.Done()
	return s
}

// remoteIP is the IP address of the far end, or its whole address if it has
// no port (a listener other than TCP).
func remoteIP(nc net.Conn) string {
	a := nc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(a); err == nil {
		return host
	}
	return a
}

func (s *session) serve() {
	m := s.c.metrics
	m.connections.Inc()
	m.connectionsSeen.Inc()
	s.c.goFunc(func() {
		s.out.Run(s.nc)
		// The writer has stopped: say why, if a write failed.
		if err := s.out.Err(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				m.cutOff.Inc()
				s.c.log.Warn("cut off a client that took nothing for the write timeout", "conn", s.id, "remote", s.nc.RemoteAddr().String(), "role", s.role, "timeout", s.c.opts.WriteTimeout)
			} else {
				s.c.log.Debug("connection write", "conn", s.id, "err", err)
			}
		}
	})
	defer func() {
		s.close(nil)
		s.subMu.Lock()
		for _, sub := range s.subs {
			s.c.unsubscribe(sub)
		}
		s.subMu.Unlock()
		s.c.live.connClosed(s.id)
		s.c.dropSession(s)
		m.connections.Dec()
	}()
	br := bufio.NewReaderSize(s.nc, connReadBuf)
	if err := s.handshake(br); err != nil {
		if errors.Is(err, errProbe) {
			// A health check or a port scan: nothing to tell anyone.
			m.probes.Inc()
			s.c.log.Debug("connection closed before hello", "conn", s.id, "remote", s.nc.RemoteAddr().String(), "err", err)
			s.close(nil)
			return
		}
		s.fail(0, err)
		return
	}
	idle := 3 * s.c.opts.KeepAlive
	var deadlineSet time.Time
	for {
		if now := time.Now(); now.Sub(deadlineSet) > idle/8 {
			s.nc.SetReadDeadline(now.Add(idle))
			deadlineSet = now
		}
		p, release, err := s.readFrame(br)
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrProtocol) || errors.Is(err, wire.ErrOverloaded) {
				s.fail(0, err)
			} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				s.c.log.Info("closing a connection silent for 3 keep-alive intervals", "conn", s.id, "remote", s.nc.RemoteAddr().String(), "role", s.role, "idle", idle)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.c.log.Debug("connection read", "conn", s.id, "err", err)
			}
			return
		}
		f, err := wire.DecodeFrame(p)
		if err != nil {
			release()
			s.fail(0, err)
			return
		}
		// Message bodies are decoded into fresh memory (msgpack copies
		// strings and byte slices), so the frame's budget is given back
		// once it is handled.
		err = s.handle(f)
		release()
		if err != nil {
			var fe errFatal
			if errors.As(err, &fe) {
				s.fail(f.ID, fe.err)
				return
			}
			s.replyErr(f.ID, err)
		}
	}
}

// ReadFrame reads the next frame, no larger than this connection may send.
// A frame of LargeFrame bytes or more first takes its size from the
// center's inbound budget (release gives it back), so that many
// connections declaring large frames cannot make the center allocate more
// than the budget; a connection that cannot get room within
// handshakeTimeout is closed with ErrOverloaded.
func (s *session) readFrame(br *bufio.Reader) (p []byte, release func(), err error) {
	release = func() {}
	n, err := wire.ReadFrameLen(br, s.maxFrame)
	if err != nil {
		return nil, release, err
	}
	if n < wire.LargeFrame {
		p, err = wire.ReadFrameBody(br, n)
		return p, release, err
	}
	ctx, cancel := context.WithTimeout(s.c.ctx, handshakeTimeout)
	err = s.c.inbound.Acquire(ctx, int64(n))
	cancel()
	if err != nil {
		return nil, release, fmt.Errorf("%w: no room for a frame of %d bytes (the center's inbound budget of %d bytes is in use)", wire.ErrOverloaded, n, s.c.opts.MaxInbound)
	}
	buf := frameBufs.get(n)
	release = func() {
		frameBufs.put(buf)
		s.c.inbound.Release(int64(n))
	}
	if _, err := io.ReadFull(br, buf); err != nil {
		release()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, func() {}, err
	}
	return buf, release, nil
}

// errProbe marks a connection that closed (or went silent) before sending
// a whole hello: a health check or a port probe, not a client.
var errProbe = errors.New("closed before hello")

// fail sends an error frame and closes the connection.
func (s *session) fail(id uint64, err error) {
	s.c.metrics.badFrames.Inc()
	s.c.log.Warn("closing connection", "conn", s.id, "remote", s.nc.RemoteAddr().String(), "role", s.role, "err", err)
	s.close(err, id)
}

// cutOff closes the connection of a client that does not keep up, at once:
// the error frame is queued but not waited for (it would sit behind what
// the client is not reading), so that its buffers are freed now.
func (s *session) cutOff(err error) {
	if s.out.IsClosing() {
		return // already on its way out
	}
	s.c.metrics.cutOff.Inc()
	s.c.log.Warn("cutting off a client that does not keep up", "conn", s.id, "remote", s.nc.RemoteAddr().String(), "role", s.role, "err", err)
	s.close(err)
	// Not under the caller's locks: closing a TLS connection may write.
	go s.nc.Close()
}

func (s *session) handshake(br *bufio.Reader) error {
	s.nc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	p, err := wire.ReadFrame(br, maxHelloFrame)
	if err != nil {
		if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrProtocol) {
			return err
		}
		return fmt.Errorf("%w: %v", errProbe, err)
	}
	f, err := wire.DecodeFrame(p)
	if err != nil {
		return err
	}
	if f.Type != wire.MsgHello {
		return fmt.Errorf("%w: first frame must be hello", wire.ErrProtocol)
	}
	var h wire.HelloMsg
	if err := wire.DecodeBody(f.Body, &h); err != nil {
		return err
	}
	if h.Version != wire.ProtocolVersion {
		return fmt.Errorf("%w: unsupported protocol version %d (this center speaks %d)", wire.ErrProtocol, h.Version, wire.ProtocolVersion)
	}
	if !h.Role.Valid() {
		return fmt.Errorf("%w: unknown role %q", wire.ErrInvalid, h.Role)
	}
	s.role, s.name = h.Role, h.Name
	if err := s.authenticate(h); err != nil {
		return err
	}
	s.maxFrame = min(maxClientFrame, s.c.opts.MaxFrame)
	if s.role == wire.RolePeer {
		s.maxFrame = s.c.opts.MaxFrame
	}
	s.c.log.Debug("connection", "conn", s.id, "remote", s.nc.RemoteAddr().String(), "role", h.Role, "name", h.Name, "authenticated", s.authed)
	return s.send(wire.MsgWelcome, f.ID, &wire.WelcomeMsg{Version: wire.ProtocolVersion, CenterID: s.c.ID(), MaxFrame: s.c.opts.MaxFrame, Rev: s.c.Rev()})
}

// authenticate decides what the connection may do. The token (when the
// center has one) or a client certificate verified against the center's
// client CAs authenticates it; Insecure makes every connection
// authenticated and InsecurePeers every peer. Roles instance and admin
// exist to write and peer to replicate: without the right they are
// refused here, with a message that says what is missing. An agent may
// always connect and read.
func (s *session) authenticate(h wire.HelloMsg) error {
	o := s.c.opts
	if o.Token != "" && h.Token != "" {
		if subtle.ConstantTimeCompare([]byte(h.Token), []byte(o.Token)) != 1 {
			return fmt.Errorf("%w: wrong token", wire.ErrUnauthorized)
		}
		s.authed = true
	}
	cert := s.verifiedCert()
	s.authed = s.authed || cert || o.Insecure
	s.peerOK = s.authed || o.InsecurePeers
	how := "the token"
	if o.Token == "" {
		how = "a client certificate (this center has no token)"
	}
	switch h.Role {
	case wire.RolePeer:
		if h.CenterID == s.c.ID() {
			return fmt.Errorf("%w: peer is this center (%s)", wire.ErrInvalid, s.c.ID())
		}
		if o.RequirePeerCert && !cert {
			return fmt.Errorf("%w: peers must present a verified client certificate", wire.ErrUnauthorized)
		}
		if !s.peerOK {
			return fmt.Errorf("%w: role peer needs %s", wire.ErrUnauthorized, how)
		}
	case wire.RoleInstance, wire.RoleAdmin:
		if !s.authed {
			return fmt.Errorf("%w: role %s needs %s", wire.ErrUnauthorized, h.Role, how)
		}
	}
	return nil
}

// verifiedCert reports whether the client presented a certificate that
// verified against the center's client CAs.
func (s *session) verifiedCert() bool {
	tc, ok := s.nc.(*tls.Conn)
	return ok && len(tc.ConnectionState().VerifiedChains) > 0
}

func (s *session) needAuth() error {
	if !s.authed {
		return Fatal(fmt.Errorf("%w: writes need the token", wire.ErrUnauthorized))
	}
	return nil
}

func (s *session) needPeer() error {
	if s.role != wire.RolePeer || !s.peerOK {
		return Fatal(fmt.Errorf("%w: peer operations need role peer", wire.ErrUnauthorized))
	}
	return nil
}

// decode decodes a body; a body that does not decode is a protocol error.
func decode(body []byte, v any) error {
	if err := wire.DecodeBody(body, v); err != nil {
		return Fatal(err)
	}
	return nil
}

func (s *session) handle(f wire.Frame) error {
	c := s.c
	switch f.Type {
	case wire.MsgPing:
		return s.send(wire.MsgPong, f.ID, nil)
	case wire.MsgPong:
		return nil
	case wire.MsgPut:
		if err := s.needAuth(); err != nil {
			return err
		}
		var m wire.PutMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		if err := wire.ValidateKV(m.Key, m.Value); err != nil {
			return err
		}
		s.submitWrite(f.ID, Op{Kind: OpPut, Key: m.Key, Value: m.Value, After: m.After, WID: m.WID})
	case wire.MsgDelete:
		if err := s.needAuth(); err != nil {
			return err
		}
		var m wire.KeyMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		// A key stored before control characters were refused can still go.
		if err := wire.ValidateStoredKey(m.Key); err != nil {
			return err
		}
		s.submitWrite(f.ID, Op{Kind: OpDelete, Key: m.Key, After: m.After, WID: m.WID})
	case wire.MsgRegister:
		if err := s.needAuth(); err != nil {
			return err
		}
		var m wire.RegisterMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		in, err := m.Instance.Normalize()
		if err != nil {
			return err
		}
		v, err := wire.EncodeInstance(in)
		if err != nil {
			return err
		}
		o := Op{Kind: OpPut, Key: in.Key(), Value: v, TTL: in.TTL, After: m.After, WID: m.WID}
		if m.TieToConn {
			o.ConnID = s.id
		}
		c.metrics.registrations.Inc()
		s.submitWrite(f.ID, o)
	case wire.MsgHeartbeat:
		if err := s.needAuth(); err != nil {
			return err
		}
		var m wire.HeartbeatMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		missing := c.live.touch(m.Keys, false)
		c.metrics.heartbeats.Add(float64(len(m.Keys)))
		return s.send(wire.MsgHeartbeatAck, f.ID, &wire.HeartbeatAckMsg{Missing: missing})
	case wire.MsgGet:
		var m wire.KeyMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		r, err := c.Get(m.Key)
		if err != nil {
			return err
		}
		return s.send(wire.MsgRecords, f.ID, &wire.RecordsMsg{Records: []wire.Record{r}})
	case wire.MsgList:
		var m wire.ListMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		return s.sendRecords(f.ID, c.list(m.Prefix))
	case wire.MsgSubscribe, wire.MsgAddPrefixes:
		var m wire.SubscribeMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		return s.subscribe(f, m)
	case wire.MsgUnsubscribe:
		var m wire.SubIDMsg
		if err := decode(f.Body, &m); err != nil {
			return err
		}
		s.subMu.Lock()
		sub := s.subs[m.SubID]
		delete(s.subs, m.SubID)
		s.subMu.Unlock()
		if sub == nil {
			return fmt.Errorf("%w: no subscription %d", wire.ErrNotFound, m.SubID)
		}
		c.unsubscribe(sub)
		return s.send(wire.MsgOK, f.ID, &wire.OKMsg{})
	case wire.MsgReplicate, wire.MsgTouch, wire.MsgDigests, wire.MsgBucket:
		if err := s.needPeer(); err != nil {
			return err
		}
		return c.backend.ServePeer(peerConn{s}, f)
	default:
		return Fatal(fmt.Errorf("%w: unexpected frame type %d from a client", wire.ErrProtocol, f.Type))
	}
	return nil
}

// submitWrite sends one op to the backend and replies when it is durable.
func (s *session) submitWrite(id uint64, o Op) {
	if len(o.WID) > wire.MaxWIDLen {
		s.replyErr(id, fmt.Errorf("%w: write id longer than %d bytes", wire.ErrInvalid, wire.MaxWIDLen))
		return
	}
	s.c.backend.Write([]Op{o}, func(res []Result, err error) {
		if err == nil {
			err = res[0].Err
		}
		if err != nil {
			s.replyErr(id, err)
			return
		}
		s.send(wire.MsgOK, id, &wire.OKMsg{Version: res[0].Version, Rev: res[0].Rev, NotFound: res[0].Absent})
	})
}

// peerConn is the session of a connection in role peer, as its backend
// answers it.
type peerConn struct{ s *session }

func (p peerConn) Send(t wire.MsgType, id uint64, body any) error { return p.s.send(t, id, body) }
func (p peerConn) SendPaced(t wire.MsgType, id uint64, body any) error {
	return p.s.sendPaced(t, id, body)
}
func (p peerConn) ReplyErr(id uint64, err error) { p.s.replyErr(id, err) }
func (p peerConn) MaxFrame() int                 { return p.s.maxFrame }

func (s *session) subscribe(f wire.Frame, m wire.SubscribeMsg) error {
	if len(m.Prefixes) == 0 || len(m.Prefixes) > maxPrefixes {
		return fmt.Errorf("%w: need 1..%d prefixes", wire.ErrInvalid, maxPrefixes)
	}
	for _, p := range m.Prefixes {
		if len(p) > wire.MaxKeyLen {
			return fmt.Errorf("%w: prefix longer than %d bytes", wire.ErrTooLarge, wire.MaxKeyLen)
		}
		if strings.IndexByte(p, 0) >= 0 {
			return fmt.Errorf("%w: a prefix may not contain NUL (no key does)", wire.ErrInvalid)
		}
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	sub := s.subs[m.SubID]
	if f.Type == wire.MsgAddPrefixes {
		if sub == nil {
			return fmt.Errorf("%w: no subscription %d", wire.ErrNotFound, m.SubID)
		}
		if n := s.c.prefixCount(sub) + len(m.Prefixes); n > maxPrefixes {
			return fmt.Errorf("%w: a subscription may have at most %d prefixes", wire.ErrInvalid, maxPrefixes)
		}
		s.c.addPrefixes(sub, m.Prefixes)
		return s.send(wire.MsgOK, f.ID, &wire.OKMsg{})
	}
	if sub != nil {
		return fmt.Errorf("%w: subscription %d exists", wire.ErrInvalid, m.SubID)
	}
	if len(s.subs) >= s.c.opts.MaxSubscriptions {
		return fmt.Errorf("%w: a connection may hold at most %d subscriptions", wire.ErrOverloaded, s.c.opts.MaxSubscriptions)
	}
	if s.c.health.unhealthy.Load() {
		return errNotPersisting
	}
	if err := s.send(wire.MsgOK, f.ID, &wire.OKMsg{Rev: s.c.Rev()}); err != nil {
		return err
	}
	sub = s.c.subscribe(s, m.SubID, m.Prefixes, m.FromRev)
	s.subs[m.SubID] = sub
	s.c.goFunc(func() { s.pushLoop(m.SubID, sub) })
	return nil
}

// pushLoop delivers a subscription's batches, waiting PushDelay after the
// first change so that a burst goes out together.
func (s *session) pushLoop(subID uint64, sub *subscriber) {
	// Batches never sent let go of the shared snapshots they hold a share of.
	var batches []*pushBatch
	defer func() {
		for _, b := range batches {
			if b.shared != nil {
				b.shared.abandon(0)
			}
		}
		left, _ := sub.take()
		for _, b := range left {
			if b.shared != nil {
				b.shared.abandon(0)
			}
		}
	}()
	for {
		select {
		case <-sub.notify:
		case <-s.done:
			return
		}
		if sub.isClosed() {
			return // unsubscribed, or cut off
		}
		var overflow bool
		batches, overflow = sub.take()
		sent := len(batches) > 0
		if overflow {
			if !s.out.IsClosing() { // not cut off already
				s.cutOff(fmt.Errorf("%w: subscriber %d fell more than %d changes behind", wire.ErrOverloaded, subID, s.c.opts.MaxBacklog))
			}
			return
		}
		for len(batches) > 0 {
			b := batches[0]
			batches = batches[1:]
			if err := s.sendPush(subID, b); err != nil {
				return
			}
		}
		if sub.isClosed() {
			return
		}
		if sent {
			sub.signal() // look again: if nothing came meanwhile, it goes live
		}
	}
}

// sendPush sends a catch-up batch at the pace of the connection: a
// snapshot from its shared encoding, changes encoded for this subscriber.
func (s *session) sendPush(subID uint64, b *pushBatch) error {
	sn := b.shared
	var chunks [][]*wire.Record
	n := 0
	if sn != nil {
		n = sn.frameCount(s.c)
	} else {
		// (An empty resume is sent too: it tells the subscriber where it is.)
		chunks = wire.ChunkRecords(b.recs, s.c.opts.MaxFrame/2)
		n = len(chunks)
	}
	for i := range n {
		if !s.out.WaitRoom(s.c.opts.MaxConnQueue / 4) {
			if sn != nil {
				sn.abandon(i)
			}
			return wire.ErrClosed
		}
		var p *wire.SharedPush
		if sn != nil {
			p = sn.frame(s.c, i)
		} else {
			p = s.c.encodePush(chunks[i], b.snapshot, i == 0, b.prefixes, b.rev, i < n-1)
		}
		// Counted before the send, so that a subscriber that has the frame
		// can rely on the count including it.
		s.c.metrics.pushes.Inc()
		s.c.metrics.pushedRecords.Add(float64(p.Records))
		// A frame encoded for this subscriber alone takes its share of the
		// center's outbound budget; a shared one is in memory once however
		// many connections queue it.
		err := s.out.SendParts(sn == nil, p.Head, p.Body, wire.PushTail(subID))
		if sn != nil {
			sn.sentFrame(i)
		}
		if err != nil {
			if sn != nil {
				sn.abandon(i + 1)
			}
			if err == wire.ErrOverloaded {
				s.cutOff(fmt.Errorf("%w: client does not read its pushes", wire.ErrOverloaded))
			}
			return err
		}
	}
	return nil
}

// sendRecords replies with records, over several frames (More set on all
// but the last) if they exceed half a frame, each queued at the pace of
// the connection.
func (s *session) sendRecords(id uint64, recs []*wire.Record) error {
	chunks := wire.ChunkRecords(recs, s.c.opts.MaxFrame/2)
	for i, ch := range chunks {
		if err := s.sendPaced(wire.MsgRecords, id, &wire.RecordsOut{Records: ch, More: i < len(chunks)-1}); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) replyErr(id uint64, err error) {
	s.send(wire.MsgError, id, &wire.ErrorMsg{Code: wire.ErrorCode(err), Message: strings.TrimPrefix(err.Error(), "registry: ")})
}

// send encodes and queues a frame. It never blocks; a client that lets more
// than MaxConnQueue bytes pile up is dropped.
func (s *session) send(t wire.MsgType, id uint64, body any) error {
	b, err := wire.EncodeFrame(t, id, body)
	if err != nil {
		return fmt.Errorf("registry: encode: %w", err)
	}
	return s.enqueue(b)
}

// sendPaced encodes a frame and queues it at the pace of the connection
// (see outbox.send): for producers of many or large frames.
func (s *session) sendPaced(t wire.MsgType, id uint64, body any) error {
	b, err := wire.EncodeFrame(t, id, body)
	if err != nil {
		return fmt.Errorf("registry: encode: %w", err)
	}
	return s.out.Send(b)
}

func (s *session) enqueue(b []byte) error {
	err := s.out.Enqueue(b)
	if err == wire.ErrOverloaded {
		s.cutOff(fmt.Errorf("%w: client does not read its replies", wire.ErrOverloaded))
	}
	return err
}

// close queues a final error frame (if err is set) and makes the writer
// flush and close the connection. ids optionally names the request.
func (s *session) close(err error, ids ...uint64) {
	var last []byte
	if err != nil {
		var id uint64
		if len(ids) > 0 {
			id = ids[0]
		}
		last, _ = wire.EncodeFrame(wire.MsgError, id, &wire.ErrorMsg{Code: wire.ErrorCode(err), Message: strings.TrimPrefix(err.Error(), "registry: ")})
	}
	s.out.Close(last)
}

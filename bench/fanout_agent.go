package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The simulated agents of the fanout workload speak the registry protocol
// themselves (docs/PROTOCOL.md: hello, subscribe, push, ping) instead of
// using registry.Conn and Subscription.Next. They are as real to the
// center as `shmreg agent`, but cost the harness far less:
//
//   - Subscription.Next returns a snapshot only once all its frames are in,
//     decoded into Records: a fill storm of S agents following a 100K-entry
//     snapshot at once would hold S x 100K decoded records (about 75 MB
//     each: 37 GB at 1,000 agents, half of them wide).
//   - registry.Conn decodes every record by reflection and runs three
//     goroutines and two 64 KiB buffers per connection; the point is to
//     measure the center, so the harness must stay cheap beside it.
//
// A fanoutAgent reads each frame as it streams in, keeps only counters and
// a latency histogram, and finds its write's marker (see fanoutInstance)
// in each record's value with one bytes.Index.

// Message types of the protocol that the simulated agents use (see
// registry/messages.go; numbers are part of the protocol).
const (
	wireHello     = 1
	wireWelcome   = 2
	wireError     = 3
	wireOK        = 4
	wirePing      = 5
	wireSubscribe = 15
	wirePush      = 17
)

// fanoutReadBuf is each agent's socket read buffer, as registry.Dial's.
const fanoutReadBuf = 64 << 10

// fanoutAgent is one simulated agent: one connection, one subscription.
type fanoutAgent struct {
	prefixes []string
	services []int // the services it follows; nil: all (svc/)
	want     int   // records in its initial snapshot

	nc  net.Conn
	br  *bufio.Reader
	fr  frameReader
	dec *msgpack.Decoder
	buf []byte // scratch for keys and values

	wmu    sync.Mutex // serializes frames written to nc (subscribe, pings)
	pingID uint64     // guarded by wmu

	// filled is when (fleet clock, ns) the initial snapshot was complete;
	// 0 until then. Written once by the agent's goroutine.
	filled atomic.Int64

	mu  sync.Mutex
	st  agentStats // the current steady phase's, guarded by mu
	err error      // why the agent stopped, guarded by mu
	// The frame being read, own goroutine only: its flags and its records'
	// markers; and the records of the initial snapshot so far.
	snapshot, more bool
	marks          []uint64
	snap           int
}

// agentStats is what one agent saw in one steady phase.
type agentStats struct {
	recs   uint64    // records carrying this phase's marker
	early  uint64    // of those, arrived before the writer had its ack (latency 0)
	stray  uint64    // records with another phase's marker (or none)
	snaps  int       // snapshot batches after the initial one
	frames uint64    // push frames
	hist   Histogram // arrival - the writer's ack (0 if before it)
	sent   Histogram // arrival - the write's send
}

// fanoutFleet is the S agents and the clock they share with the writers.
type fanoutFleet struct {
	agents []*fanoutAgent
	base   time.Time     // the fleet clock: ns since base (monotonic)
	start  chan struct{} // closed: every agent subscribes
	t0     atomic.Int64  // fleet clock when start was closed
	filled atomic.Int64  // agents whose snapshot is complete
	failed atomic.Int64  // agents that stopped with an error
	phase  atomic.Pointer[steadyPhase]
	wg     sync.WaitGroup
	stop   chan struct{}
}

// steadyPhase is one steady-write measurement: its id (carried by the
// writes' markers) and, per write, when the writer had its ack.
type steadyPhase struct {
	id        int
	acks      []atomic.Int64 // fleet clock of write n's ack; 0: not yet
	sent      []atomic.Int64 // fleet clock of write n's send
	delivered atomic.Uint64  // records of this phase received, all agents
}

func (f *fanoutFleet) now() int64 { return int64(time.Since(f.base)) }

// dialFleet connects the agents (hello/welcome only: they subscribe when
// subscribe is called), `parallel` dials at a time.
func dialFleet(ctx context.Context, addr string, agents []*fanoutAgent, parallel int) (*fanoutFleet, error) {
	f := &fanoutFleet{agents: agents, base: time.Now(), start: make(chan struct{}), stop: make(chan struct{})}
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range min(parallel, len(agents)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(agents) || ctx.Err() != nil {
					return
				}
				if err := agents[i].dial(ctx, addr); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("agent %d: %w", i, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.close()
		return nil, err
	}
	if ctx.Err() != nil {
		f.close()
		return nil, ctx.Err()
	}
	for _, a := range agents {
		f.wg.Add(1)
		go a.run(f)
	}
	f.wg.Add(1)
	go f.keepAlive()
	return f, nil
}

// subscribe releases every agent's subscription at once.
func (f *fanoutFleet) subscribe() {
	f.t0.Store(f.now())
	close(f.start)
}

// keepAlive pings every connection every 10s, as registry.Dial does: the
// center closes a connection silent for 30s.
func (f *fanoutFleet) keepAlive() {
	defer f.wg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		for _, a := range f.agents {
			a.wmu.Lock()
			a.pingID++
			id := a.pingID
			a.wmu.Unlock()
			a.send(wirePing, id, nil)
		}
	}
}

// close ends every connection and waits for the agents' goroutines.
func (f *fanoutFleet) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	for _, a := range f.agents {
		if a.nc != nil {
			a.nc.Close()
		}
	}
	f.wg.Wait()
}

// startPhase resets every agent's counters and makes p the phase that
// arriving markers are measured against.
func (f *fanoutFleet) startPhase(p *steadyPhase) {
	for _, a := range f.agents {
		a.mu.Lock()
		a.st = agentStats{}
		a.mu.Unlock()
	}
	f.phase.Store(p)
}

// dial connects and says hello.
func (a *fanoutAgent) dial(ctx context.Context, addr string) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	a.nc = nc
	a.br = bufio.NewReaderSize(nc, fanoutReadBuf)
	a.fr.br = a.br
	a.dec = msgpack.NewDecoder(&a.fr)
	a.buf = make([]byte, 1024)
	if err := a.send(wireHello, 1, map[string]any{"version": 1, "role": "agent", "name": "bench-fanout"}); err != nil {
		return err
	}
	if dl, ok := dctx.Deadline(); ok {
		nc.SetReadDeadline(dl)
	}
	typ, err := a.next()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if err := a.finish(typ); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if typ != wireWelcome {
		return fmt.Errorf("handshake: frame type %d, want welcome", typ)
	}
	return nc.SetReadDeadline(time.Time{})
}

// send writes one frame: its length, then [type, id, body] in msgpack.
func (a *fanoutAgent) send(typ int, id uint64, body any) error {
	payload, err := msgpack.Marshal([]any{typ, id, body})
	if err != nil {
		return err
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), uint32(len(payload)))
	b = append(b, payload...)
	a.wmu.Lock()
	defer a.wmu.Unlock()
	_, err = a.nc.Write(b)
	return err
}

// next starts reading a frame: its length, type and id. The body follows
// in a.dec; finish skips what the caller did not read.
func (a *fanoutAgent) next() (typ int, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(a.br, hdr[:]); err != nil {
		return 0, err
	}
	a.fr.left = int(binary.BigEndian.Uint32(hdr[:]))
	return a.head()
}

// head reads the [type, id, ... of a frame whose payload (a.fr.left bytes)
// is next on the connection.
func (a *fanoutAgent) head() (typ int, err error) {
	n, err := a.dec.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n != 3 {
		return 0, fmt.Errorf("frame of %d elements, want 3", n)
	}
	t, err := a.dec.DecodeUint()
	if err != nil {
		return 0, err
	}
	_, err = a.dec.DecodeUint64()
	return int(t), err
}

// finish reads the rest of a frame: an error frame is returned as an
// error; anything else unread is skipped.
func (a *fanoutAgent) finish(typ int) error {
	if typ == wireError {
		var e struct {
			Code    string `msgpack:"code"`
			Message string `msgpack:"message"`
		}
		if err := a.dec.Decode(&e); err != nil {
			return err
		}
		return fmt.Errorf("center: %s: %s", e.Code, e.Message)
	}
	if a.fr.left > 0 {
		_, err := a.br.Discard(a.fr.left)
		a.fr.left = 0
		return err
	}
	return nil
}

// run subscribes when the fleet says so, then reads pushes until the
// connection closes.
func (a *fanoutAgent) run(f *fanoutFleet) {
	defer f.wg.Done()
	err := a.serve(f)
	select {
	case <-f.stop: // closed by the harness: not a failure
		return
	default:
	}
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
	f.failed.Add(1)
}

func (a *fanoutAgent) serve(f *fanoutFleet) error {
	select {
	case <-f.start:
	case <-f.stop:
		return nil
	}
	if err := a.send(wireSubscribe, 1, map[string]any{"sub_id": 1, "prefixes": a.prefixes}); err != nil {
		return err
	}
	for {
		push, err := a.readFrame()
		if err != nil {
			return err
		}
		if push {
			if err := a.delivered(f); err != nil {
				return err
			}
		}
	}
}

// readFrame reads one frame; for a push, it sets a.snapshot, a.more and
// a.marks. A frame that fits the read buffer (every change push) is
// scanned where it lies; a larger one (a snapshot's) is decoded as it
// streams in.
func (a *fanoutAgent) readFrame() (push bool, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(a.br, hdr[:]); err != nil {
		return false, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if b, err := a.br.Peek(n); err == nil && len(b) > 2 && b[0] == 0x93 && b[1] == wirePush {
		a.scanPush(b)
		_, err := a.br.Discard(n)
		return true, err
	}
	a.fr.left = n
	typ, err := a.head()
	if err != nil {
		return false, err
	}
	if typ == wirePush {
		if err := a.decodePush(); err != nil {
			return false, err
		}
	}
	return typ == wirePush, a.finish(typ)
}

// The msgpack of a push frame's flags when they are set (both are
// omitted when false): a fixstr key and true.
var (
	snapshotTrue = []byte("\xa8snapshot\xc3")
	moreTrue     = []byte("\xa4more\xc3")
)

// scanPush reads a whole push frame's flags and markers from its bytes
// without decoding it: the keys and values of this workload's records
// cannot hold those byte strings, and every record's value carries one
// marker (a record without is caught by the snapshot count).
func (a *fanoutAgent) scanPush(b []byte) {
	a.snapshot, a.more = bytes.Contains(b, snapshotTrue), bytes.Contains(b, moreTrue)
	a.marks = a.marks[:0]
	for {
		i := bytes.Index(b, markerTag)
		if i < 0 {
			return
		}
		if m, ok := parseMarker(b[i:]); ok {
			a.marks = append(a.marks, m)
		}
		b = b[i+len(markerTag):]
	}
}

// decodePush decodes a push frame's body as it streams in: {sub_id,
// snapshot, prefixes, records, rev, more, center_id}, keeping only the
// markers of its records.
func (a *fanoutAgent) decodePush() error {
	n, err := a.dec.DecodeMapLen()
	if err != nil {
		return err
	}
	a.snapshot, a.more = false, false
	a.marks = a.marks[:0]
	for range n {
		k, err := a.str()
		if err != nil {
			return err
		}
		switch string(k) {
		case "snapshot":
			a.snapshot, err = a.dec.DecodeBool()
		case "more":
			a.more, err = a.dec.DecodeBool()
		case "records":
			err = a.records()
		default:
			err = a.dec.Skip()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// delivered accounts for the push frame just read: the initial snapshot's
// records, or each record's delivery latency.
func (a *fanoutAgent) delivered(f *fanoutFleet) error {
	now := f.now()
	if a.filled.Load() == 0 {
		// The initial snapshot, over one or more frames.
		if !a.snapshot {
			return errors.New("the first push is not a snapshot")
		}
		a.snap += len(a.marks)
		if a.more {
			return nil
		}
		if a.snap != a.want {
			return fmt.Errorf("snapshot of %d records, want %d", a.snap, a.want)
		}
		a.filled.Store(now)
		f.filled.Add(1)
		return nil
	}
	p := f.phase.Load()
	var got uint64
	a.mu.Lock()
	a.st.frames++
	if a.snapshot {
		a.st.snaps++
	}
	for _, m := range a.marks {
		ph, seq := int(m/fanoutSeqSpan), int(m%fanoutSeqSpan)
		if p == nil || ph != p.id || seq >= len(p.acks) {
			a.st.stray++
			continue
		}
		got++
		a.st.recs++
		a.st.sent.Record(time.Duration(now - p.sent[seq].Load()))
		ack := p.acks[seq].Load()
		if ack == 0 || ack > now {
			a.st.early++
			a.st.hist.Record(0)
			continue
		}
		a.st.hist.Record(time.Duration(now - ack))
	}
	a.mu.Unlock()
	if p != nil && got > 0 {
		p.delivered.Add(got)
	}
	return nil
}

// records reads an array of records, noting each value's marker.
func (a *fanoutAgent) records() error {
	n, err := a.dec.DecodeArrayLen()
	if err != nil || n <= 0 {
		return err
	}
	for range n {
		fields, err := a.dec.DecodeMapLen()
		if err != nil {
			return err
		}
		for range fields {
			k, err := a.str()
			if err != nil {
				return err
			}
			if string(k) != "value" {
				if err := a.dec.Skip(); err != nil {
					return err
				}
				continue
			}
			v, err := a.str()
			if err != nil {
				return err
			}
			if m, ok := parseMarker(v); ok {
				a.marks = append(a.marks, m)
			} else {
				a.marks = append(a.marks, 0) // counted (snapshot), never matched
			}
		}
	}
	return nil
}

// str reads a msgpack string or binary into a.buf and returns it; it is
// valid until the next call.
func (a *fanoutAgent) str() ([]byte, error) {
	n, err := a.dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > cap(a.buf) {
		a.buf = make([]byte, n)
	}
	b := a.buf[:n]
	return b, a.dec.ReadFull(b)
}

// frameReader reads one frame's payload from the connection: the msgpack
// decoder reads through it and cannot run past the frame.
type frameReader struct {
	br   *bufio.Reader
	left int
}

func (r *frameReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n, err := r.br.Read(p[:min(len(p), r.left)])
	r.left -= n
	return n, err
}

func (r *frameReader) ReadByte() (byte, error) {
	if r.left <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	b, err := r.br.ReadByte()
	if err == nil {
		r.left--
	}
	return b, err
}

func (r *frameReader) UnreadByte() error {
	if err := r.br.UnreadByte(); err != nil {
		return err
	}
	r.left++
	return nil
}

// The marker of a write is a metadata entry of its instance,
// "bseq": "PPSSSSSSSS" (phase, sequence number), found in the encoded
// value by its msgpack bytes: a fixstr key "bseq", a 10-byte fixstr.
var markerTag = []byte{0xa4, 'b', 's', 'e', 'q', 0xaa}

// fanoutSeqSpan is the number of writes one phase can number.
const fanoutSeqSpan = 100_000_000

// formatMarker is the marker value of write seq of phase.
func formatMarker(phase, seq int) string { return fmt.Sprintf("%02d%08d", phase, seq) }

// parseMarker finds the marker in an encoded instance and returns
// phase*fanoutSeqSpan + seq.
func parseMarker(v []byte) (uint64, bool) {
	i := bytes.Index(v, markerTag)
	if i < 0 || len(v) < i+len(markerTag)+10 {
		return 0, false
	}
	var m uint64
	for _, c := range v[i+len(markerTag) : i+len(markerTag)+10] {
		if c < '0' || c > '9' {
			return 0, false
		}
		m = m*10 + uint64(c-'0')
	}
	return m, true
}

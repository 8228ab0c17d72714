// Package pair is the mirrored pair's backend of a registry center: each
// center keeps its records in memory and in bbolt, orders writes by a
// hybrid logical clock (last writer wins), replicates every change to the
// other center and repairs differences by anti-entropy. Both centers
// accept writes and stay available through a partition. The front of a
// center (sessions, subscriptions, liveness) is registry/center; New puts
// the two together.
package pair

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// Options configure a center of a pair: its front, and the backend's own
// settings. The zero value of every field means its documented default.
type Options struct {
	center.Options
	// Peer is the address of the other center of the pair. Empty: no mirror.
	Peer string
	// DataDir holds the center's bbolt store and its stable center id. Empty
	// means in memory only: nothing survives a restart and the id is new on
	// every start (for tests and benchmarks).
	DataDir string
	// PeerTLS, if set, is used to dial the peer over TLS (with the client
	// certificate the peer requires).
	PeerTLS *tls.Config
	// TombstoneRetention is how long a delete is remembered (so the peer
	// cannot resurrect the key) before it is purged. Default 24h. The pair
	// must not stay partitioned longer than this.
	TombstoneRetention time.Duration
	// AntiEntropyInterval is how often the pair compares digests while
	// connected (they always do on (re)connect). Default 30s.
	AntiEntropyInterval time.Duration
	// TouchInterval is how often heartbeats received are forwarded to the
	// peer, so that either center can judge liveness. Default 500ms.
	TouchInterval time.Duration
	// MaxClockAhead bounds how far ahead of this center's wall clock a
	// version it is given (by the peer, by anti-entropy, or as a client's
	// after) may be: a record stamped further ahead is refused, counted and
	// logged, so that nobody can drag the pair's clock (and every later
	// version) into the future. It must exceed the clock skew between the
	// two centers. Default 1m.
	MaxClockAhead time.Duration
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.TombstoneRetention, 24*time.Hour)
	def(&o.AntiEntropyInterval, 30*time.Second)
	def(&o.TouchInterval, 500*time.Millisecond)
	def(&o.MaxClockAhead, time.Minute)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Center is a center of a mirrored pair: the front of registry/center over
// this package's backend.
type Center struct {
	*center.Center
	backend *Backend
}

// New opens the data directory (creating it if needed), recovers the
// records and the center id, and returns a center ready to Start.
func New(opts Options) (*Center, error) {
	b, err := NewBackend(opts)
	if err != nil {
		return nil, err
	}
	front, err := center.New(b.opts.Options, b)
	if err != nil {
		b.Close()
		return nil, err
	}
	return &Center{Center: front, backend: b}, nil
}

// PeerConnected reports whether the replication link to the peer is up.
func (c *Center) PeerConnected() bool { return c.backend.peerUp.Load() }

// Backend keeps a center's records for the mirrored pair.
//
// Ownership: the committer goroutine is the only writer of records, the
// revision counter and the digests; it takes mu for writing only while it
// publishes a committed batch (and the front's Publish runs then). Reads
// take mu for reading.
type Backend struct {
	opts    Options
	log     *slog.Logger
	id      string
	store   *store // nil: memory only
	clock   *hlc
	metrics *pairMetrics
	front   center.Front
	// clockWarned is when a far-ahead version was last logged, per source
	// (client, peer).
	clockWarned [2]atomic.Int64

	mu sync.RWMutex
	// The records (immutable values: replaced, never mutated), the last
	// revision issued and the highest revision of a purged tombstone.
	center.MapView
	digests  digestTable
	outgoing map[*changeQueue]struct{} // the replicator's queue while its link is up

	writes  chan *writeReq
	retries *retryTable // owned by the committer

	ctx    context.Context
	wg     sync.WaitGroup
	peerUp atomic.Bool
}

// NewBackend opens the store and recovers the records.
func NewBackend(opts Options) (*Backend, error) {
	opts = opts.withDefaults()
	m, err := newPairMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registry: metrics: %w", err)
	}
	b := &Backend{
		opts:     opts,
		log:      opts.Logger,
		clock:    newHLC(nil),
		metrics:  m,
		outgoing: make(map[*changeQueue]struct{}),
		retries:  newRetryTable(),
		writes:   make(chan *writeReq, 4096),
	}
	b.Recs = make(map[string]*wire.Record)
	b.digests.init()
	var st persistedState
	if opts.DataDir != "" {
		b.store, st, err = openStore(opts.DataDir)
		if err != nil {
			return nil, err
		}
	} else {
		st.centerID = newCenterID()
	}
	b.id = st.centerID
	b.Rev, b.CompactedRev = st.rev, st.compactedRev
	ahead := 0
	for _, r := range st.records {
		b.Recs[r.Key] = r
		b.digests.add(r)
		// Our own durable records move the clock even when far ahead: a
		// later write must order after them. Only new input is bounded.
		if r.Version.HLC > b.clock.limit(opts.MaxClockAhead) {
			ahead++
		}
		b.clock.Observe(r.Version.HLC)
		if r.Rev > b.Rev {
			b.Rev = r.Rev
		}
	}
	if ahead > 0 {
		b.log.Warn("the store holds records stamped further ahead of the wall clock than MaxClockAhead; this center's versions follow them",
			"records", ahead, "clock", wire.Version{HLC: b.clock.Now()}.Time())
	}
	return b, nil
}

// ID is the center's stable id (persisted in DataDir).
func (b *Backend) ID() string { return b.id }

// Start starts committing, purging old tombstones and, with a peer,
// replicating.
func (b *Backend) Start(ctx context.Context, front center.Front) error {
	b.front, b.ctx = front, ctx
	b.goFunc(b.commitLoop)
	b.goFunc(b.purgeLoop)
	if b.opts.Peer != "" {
		b.goFunc(b.replicateLoop)
	}
	return nil
}

func (b *Backend) goFunc(f func()) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
}

// Close waits for the backend's goroutines (they end with the context
// given to Start) and closes the store.
func (b *Backend) Close() error {
	b.wg.Wait()
	if b.store != nil {
		return b.store.close()
	}
	return nil
}

// Write commits client writes and expiries (see center.Backend).
func (b *Backend) Write(ops []center.Op, done func([]center.Result, error)) {
	in := make([]op, len(ops))
	for i, o := range ops {
		in[i] = op{key: o.Key, value: o.Value, wid: o.WID, connID: o.ConnID, ttl: o.TTL, expect: o.Expect}
		switch o.Kind {
		case center.OpPut:
			in[i].kind = opPut
		case center.OpDelete:
			in[i].kind = opDelete
		case center.OpExpire:
			in[i].kind = opExpire
		}
		if o.After != 0 && (o.Kind == center.OpPut || o.Kind == center.OpDelete) {
			// Past the client's after, if it is believable (see admitVersion).
			if b.admitVersion(o.After, fromClient) && o.Kind == center.OpDelete {
				in[i].after = o.After
			}
		}
	}
	b.submit(&writeReq{ops: in, done: func(res []opResult, err error) {
		if err != nil {
			done(nil, err)
			return
		}
		out := make([]center.Result, len(res))
		for i, r := range res {
			out[i] = center.Result{Version: r.Version, Rev: r.Rev, Applied: r.Applied, Absent: r.Absent, Err: r.Err}
		}
		done(out, nil)
	}})
}

// Read runs f with the records locked against publication.
func (b *Backend) Read(f func(center.View)) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	f(b.AsView())
}

// Probe makes one large durable write (see store.probe).
func (b *Backend) Probe() error {
	if b.store == nil {
		return nil
	}
	return b.store.probe()
}

// HeartbeatSlack is the forwarding delay of heartbeats received by the
// peer: they are forwarded every TouchInterval.
func (b *Backend) HeartbeatSlack() time.Duration {
	if b.opts.Peer == "" {
		return 0
	}
	return 2 * b.opts.TouchInterval
}

// Judges: both centers of a pair judge every instance.
func (b *Backend) Judges(*wire.Record) bool { return true }

// ServePeer answers the peer's replication requests.
func (b *Backend) ServePeer(p center.PeerConn, f wire.Frame) error {
	switch f.Type {
	case wire.MsgReplicate:
		var m wire.RecordsMsg
		if err := wire.DecodeBody(f.Body, &m); err != nil {
			return center.Fatal(err)
		}
		ops := make([]op, 0, len(m.Records))
		for _, r := range m.Records {
			// A peer of an older version may hold keys with control
			// characters: they replicate still.
			if err := wire.ValidateStoredKey(r.Key); err != nil {
				return err
			}
			if err := wire.ValidateValue(r.Value); err != nil {
				return err
			}
			ops = append(ops, op{kind: opApply, key: r.Key, rec: r})
		}
		id := f.ID
		b.submit(&writeReq{ops: ops, fromPeer: true, done: func(_ []opResult, err error) {
			if err != nil {
				p.ReplyErr(id, err)
				return
			}
			p.Send(wire.MsgOK, id, &wire.OKMsg{Rev: b.Rev})
		}})
		return nil
	case wire.MsgTouch:
		var m wire.TouchMsg
		if err := wire.DecodeBody(f.Body, &m); err != nil {
			return center.Fatal(err)
		}
		b.front.Touch(m.Keys)
		return nil
	case wire.MsgDigests:
		return p.Send(wire.MsgDigestsReply, f.ID, &wire.DigestsMsg{Digests: b.digestSnapshot()})
	case wire.MsgBucket:
		var m wire.BucketMsg
		if err := wire.DecodeBody(f.Body, &m); err != nil {
			return center.Fatal(err)
		}
		if m.Bucket < 0 || m.Bucket >= numBuckets {
			return fmt.Errorf("%w: bucket %d out of range", wire.ErrInvalid, m.Bucket)
		}
		recs, more := b.bucketRecords(m.Bucket, m.After, p.MaxFrame()/2)
		return p.SendPaced(wire.MsgRecords, f.ID, &wire.RecordsOut{Records: recs, More: more})
	}
	return center.Fatal(fmt.Errorf("%w: unexpected frame type %d from a peer", wire.ErrProtocol, f.Type))
}

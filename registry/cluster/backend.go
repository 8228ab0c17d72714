package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/internal/backoff"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Backend keeps a center's records in etcd and a cache of them in memory.
//
// The cache is fed by one watch on the records' prefix, started at the
// revision of the snapshot it was loaded from: the watcher goroutine is its
// only writer, and it takes mu for writing only while it applies one watch
// response and hands it to front.Publish, so that a Read (under mu for
// reading) sees a response entirely or not at all. Writes go to etcd from
// one committer goroutine, in batches (one etcd transaction each), and are
// acknowledged only once the watch brought their revision into the cache:
// a client that reads from the center it wrote through sees its write.
//
// Versions: a record's Version is {HLC: its etcd mod revision, Origin: the
// cluster id}, and its Rev is the same revision. Deletes are etcd deletes;
// the cache keeps them as tombstones (Rev: the delete's revision) for
// TombstoneRetention, so subscribers can resume from before them.
type Backend struct {
	opts      Options
	log       *slog.Logger
	member    *member // nil: an external etcd (Options.Endpoints)
	cli       *clientv3.Client
	id        string
	recPrefix string
	metrics   *clusterMetrics
	front     center.Front

	mu sync.RWMutex
	// The cache (immutable values: replaced, never mutated), the revision
	// it is at, and the oldest revision it can resume from.
	center.MapView
	tombs []tomb // remembered deletes, oldest first

	// ownMu guards owners (taken inside mu, never around it): the front
	// asks Judges while the watcher publishes.
	ownMu  sync.RWMutex
	owners map[string]string // live instance key -> owning center's name

	writes  chan *writeReq
	leaseID atomic.Int64
	// viaVoters: the member is a learner, and the client talks to the
	// voters' members (owned by tickLoop once started).
	viaVoters bool

	waitMu  sync.Mutex
	waiters []*writeReq       // committed, waiting for the watch to bring their revision
	pending map[uint64]uint64 // seq of an own instance write in flight -> its connection
	seq     atomic.Uint64

	ctx context.Context
	wg  sync.WaitGroup
}

type tomb struct {
	key string
	rev uint64
	at  time.Time
}

type writeReq struct {
	ops  []center.Op
	done func([]center.Result, error)
	res  []center.Result
	rev  uint64    // committed at: acknowledged once the cache is there
	at   time.Time // committed when
}

// NewBackend starts the embedded etcd member (or dials Endpoints) and loads
// the records.
func NewBackend(ctx context.Context, opts Options) (*Backend, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newClusterMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("cluster: metrics: %w", err)
	}
	b := &Backend{
		opts:      opts,
		log:       opts.Logger,
		recPrefix: opts.Prefix + "records/",
		metrics:   m,
		owners:    make(map[string]string),
		writes:    make(chan *writeReq, 4096),
		pending:   make(map[uint64]uint64),
	}
	b.Recs = make(map[string]*wire.Record)
	endpoints := opts.Endpoints
	if len(endpoints) == 0 {
		b.member, err = startMember(ctx, opts)
		if err != nil {
			return nil, err
		}
		endpoints = b.member.endpoints(opts.ClientURL)
		b.viaVoters = b.member.isLearner()
	}
	lg := zap.NewNop()
	if opts.EtcdLogLevel == "debug" {
		lg, _ = zap.NewDevelopment()
	}
	b.cli, err = clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: lg,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second})
	if err != nil {
		b.closeStore()
		return nil, fmt.Errorf("cluster: etcd client (%s): %w", strings.Join(endpoints, ","), err)
	}
	if err := b.load(ctx); err != nil {
		b.closeStore()
		return nil, err
	}
	return b, nil
}

// load fills the cache from a snapshot of the records.
func (b *Backend) load(ctx context.Context) error {
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := b.cli.Get(gctx, b.recPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("cluster: read the records from etcd: %w", err)
	}
	b.id = fmt.Sprintf("etcd-%016x", resp.Header.ClusterId)
	for _, kv := range resp.Kvs {
		if rec, owner, ok := b.decode(kv); ok {
			b.Recs[rec.Key] = rec
			b.setOwner(rec.Key, owner)
		}
	}
	// Deletes before the snapshot are not known here: a subscriber from
	// before it gets a snapshot.
	b.Rev = uint64(resp.Header.Revision)
	b.CompactedRev = b.Rev
	return nil
}

func (b *Backend) decode(kv *mvccpb.KeyValue) (*wire.Record, string, bool) {
	key := string(kv.Key[len(b.recPrefix):])
	s, err := decodeStored(kv.Value)
	if err != nil {
		b.log.Warn("etcd holds a record shmreg cannot decode; ignored", "key", key, "err", err)
		return nil, "", false
	}
	rev := uint64(kv.ModRevision)
	return &wire.Record{Key: key, Value: s.Value, Version: wire.Version{HLC: rev, Origin: b.id}, Rev: rev, WID: s.WID}, s.Owner, true
}

// ID is the cluster's id, the same on every center: revisions are global,
// so an agent resumes by revision on any center.
func (b *Backend) ID() string { return b.id }

// Client is the backend's etcd client.
func (b *Backend) Client() *clientv3.Client { return b.cli }

// Start grants this center's lease and starts committing, watching,
// keeping the lease alive and, unless NoPromote, supervising.
func (b *Backend) Start(ctx context.Context, front center.Front) error {
	b.front, b.ctx = front, ctx
	if err := b.grantLease(); err != nil {
		return err
	}
	b.goFunc(b.commitLoop)
	b.goFunc(b.watchLoop)
	b.goFunc(b.leaseLoop)
	b.goFunc(b.tickLoop)
	if !b.opts.NoPromote {
		b.goFunc(b.superviseLoop)
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
// given to Start) and stops the etcd client and member.
func (b *Backend) Close() error {
	b.wg.Wait()
	b.closeStore()
	return nil
}

func (b *Backend) closeStore() {
	if b.cli != nil {
		b.cli.Close()
	}
	if b.member != nil {
		b.member.close()
	}
}

// Write queues ops for the committer (see center.Backend).
func (b *Backend) Write(ops []center.Op, done func([]center.Result, error)) {
	req := &writeReq{ops: ops, done: done}
	select {
	case b.writes <- req:
	case <-b.ctx.Done():
		done(nil, wire.ErrClosed)
	}
}

// Read runs f with the cache locked against the watcher.
func (b *Backend) Read(f func(center.View)) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	f(b.AsView())
}

// ServePeer refuses: a cluster's centers replicate through etcd.
func (b *Backend) ServePeer(p center.PeerConn, f wire.Frame) error {
	return center.Fatal(fmt.Errorf("%w: a cluster center has no peers (its records replicate through etcd)", wire.ErrProtocol))
}

// Probe makes one linearizable read, which needs a quorum.
func (b *Backend) Probe() error {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	if b.member != nil && !b.member.hasLeader() {
		return unavailable(errNoLeader)
	}
	if _, err := b.cli.Get(ctx, b.opts.Prefix+"probe"); err != nil {
		return unavailable(err)
	}
	return nil
}

// HeartbeatSlack is 0: heartbeats are not forwarded; each center judges
// only the instances registered through it (see Judges).
func (b *Backend) HeartbeatSlack() time.Duration { return 0 }

func unavailable(err error) error {
	return fmt.Errorf("%w: the cluster cannot commit through this center (%v); use another center", wire.ErrUnavailable, err)
}

// ---- the watch ----

// watchLoop feeds the cache from one watch on the records' prefix, from the
// revision after the cache's, for as long as the center runs. A watch that
// loses its leader or its connection is started again from where the cache
// is; one whose start was compacted away reloads a snapshot.
func (b *Backend) watchLoop() {
	bo := backoff.New(50*time.Millisecond, 2*time.Second)
	for b.ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(b.ctx))
		wch := b.cli.Watch(wctx, b.recPrefix, clientv3.WithPrefix(), clientv3.WithRev(int64(b.Rev)+1))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				b.log.Warn("watch start compacted away: reloading a snapshot", "from", b.Rev+1, "compacted", resp.CompactRevision)
				if err := b.resnapshot(); err != nil {
					b.log.Warn("reload a snapshot", "err", err)
				}
				break
			}
			if err := resp.Err(); err != nil {
				b.front.StoreFailed(unavailable(err))
				b.log.Warn("watch interrupted", "err", err, "rev", b.Rev)
				break
			}
			if len(resp.Events) > 0 {
				b.apply(resp.Events)
				bo.Reset()
			}
		}
		cancel()
		select {
		case <-time.After(bo.Next()):
		case <-b.ctx.Done():
		}
	}
	b.answerWaiters(true)
}

// apply makes one watch response visible: cache, then front.Publish, under
// mu; then acknowledges the writes it completes.
func (b *Backend) apply(events []*clientv3.Event) {
	now := time.Now()
	changes := make([]center.Change, 0, len(events))
	b.mu.Lock()
	for _, ev := range events {
		key := string(ev.Kv.Key[len(b.recPrefix):])
		rev := uint64(ev.Kv.ModRevision)
		var ch center.Change
		switch ev.Type {
		case mvccpb.PUT:
			rec, owner, ok := b.decode(ev.Kv)
			if !ok {
				continue
			}
			ch = center.Change{Key: key, Rec: rec}
			b.setOwner(key, owner)
			if owner != "" {
				if owner == b.opts.Name {
					if s, err := decodeStored(ev.Kv.Value); err == nil && s.Seq != 0 {
						ch.ConnID = b.takePending(s.Seq)
					}
				}
			}
		case mvccpb.DELETE:
			old := b.Recs[key]
			if old == nil || old.Deleted {
				b.Rev = max(b.Rev, rev)
				continue
			}
			b.setOwner(key, "")
			ch = center.Change{Key: key, Rec: &wire.Record{Key: key, Version: wire.Version{HLC: rev, Origin: b.id}, Deleted: true, Rev: rev}}
			b.tombs = append(b.tombs, tomb{key: key, rev: rev, at: now})
		}
		b.Recs[key] = ch.Rec
		b.Rev = max(b.Rev, rev)
		changes = append(changes, ch)
	}
	b.purgeTombstones(now)
	if len(changes) > 0 {
		b.front.Publish(changes, b.Rev)
	}
	b.metrics.applied.Add(float64(len(changes)))
	b.mu.Unlock()
	b.answerWaiters(false)
}

// purgeTombstones forgets the deletes past the retention or the bound.
// Called with mu held.
func (b *Backend) purgeTombstones(now time.Time) {
	n := 0
	for n < len(b.tombs) && (len(b.tombs)-n > b.opts.MaxTombstones || now.Sub(b.tombs[n].at) > b.opts.TombstoneRetention) {
		t := b.tombs[n]
		if r := b.Recs[t.key]; r != nil && r.Deleted && r.Rev == t.rev {
			delete(b.Recs, t.key)
		}
		b.CompactedRev = max(b.CompactedRev, t.rev)
		n++
	}
	if n > 0 {
		b.tombs = append(b.tombs[:0], b.tombs[n:]...)
	}
}

// resnapshot reloads the records after the watch lost its history: what
// differs from the cache is published as one batch (tombstones for what
// disappeared), so subscribers stay exact.
func (b *Backend) resnapshot() error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := b.cli.Get(ctx, b.recPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	now := time.Now()
	rev := uint64(resp.Header.Revision)
	seen := make(map[string]struct{}, len(resp.Kvs))
	b.mu.Lock()
	var changes []center.Change
	for _, kv := range resp.Kvs {
		rec, owner, ok := b.decode(kv)
		if !ok {
			continue
		}
		seen[rec.Key] = struct{}{}
		if old := b.Recs[rec.Key]; old != nil && !old.Deleted && old.Rev == rec.Rev {
			continue
		}
		b.Recs[rec.Key] = rec
		b.setOwner(rec.Key, owner)
		changes = append(changes, center.Change{Key: rec.Key, Rec: rec})
	}
	for k, old := range b.Recs {
		if _, ok := seen[k]; ok || old.Deleted {
			continue
		}
		t := &wire.Record{Key: k, Version: wire.Version{HLC: rev, Origin: b.id}, Deleted: true, Rev: rev}
		b.Recs[k] = t
		b.setOwner(k, "")
		b.tombs = append(b.tombs, tomb{key: k, rev: rev, at: now})
		changes = append(changes, center.Change{Key: k, Rec: t})
	}
	b.Rev = max(b.Rev, rev)
	if len(changes) > 0 {
		b.front.Publish(changes, b.Rev)
	}
	b.mu.Unlock()
	b.answerWaiters(false)
	return nil
}

// ---- acknowledgements ----

func (b *Backend) addPending(connID uint64) uint64 {
	s := b.seq.Add(1)
	b.waitMu.Lock()
	b.pending[s] = connID
	b.waitMu.Unlock()
	return s
}

func (b *Backend) takePending(s uint64) uint64 {
	b.waitMu.Lock()
	defer b.waitMu.Unlock()
	c := b.pending[s]
	delete(b.pending, s)
	return c
}

// answerWaiters acknowledges the committed writes whose revision the cache
// reached, in commit order; all of them if all (stopping, or the watch has
// been behind for longer than the write timeout: they are committed).
func (b *Backend) answerWaiters(all bool) {
	b.mu.RLock()
	rev := b.Rev
	b.mu.RUnlock()
	b.waitMu.Lock()
	n := 0
	for n < len(b.waiters) && (all || b.waiters[n].rev <= rev || time.Since(b.waiters[n].at) > b.opts.WriteTimeout) {
		n++
	}
	ready := append([]*writeReq(nil), b.waiters[:n]...)
	b.waiters = append(b.waiters[:0], b.waiters[n:]...)
	b.waitMu.Unlock()
	for _, r := range ready {
		r.done(r.res, nil)
	}
}

// tickLoop acknowledges writes the watch is late with, and moves a
// promoted listener's client to its own member.
func (b *Backend) tickLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.answerWaiters(false)
		if b.viaVoters && !b.member.isLearner() {
			b.viaVoters = false
			b.cli.SetEndpoints(b.opts.ClientURL)
			b.log.Info("this listener is a voter now: its client uses its own member", "endpoint", b.opts.ClientURL)
		}
	}
}

var errLeaseLost = errors.New("this center holds no etcd lease for its instances")

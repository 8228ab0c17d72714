package center

import (
	"context"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// A center is a front and a backend. The front (this package) is the same
// whatever keeps the records: it serves the protocol, authenticates and
// bounds connections, keeps subscriptions and pushes changes to them, and
// judges liveness. The backend stores the records, orders the changes
// (issuing revisions) and replicates them: the mirrored pair (bbolt, a
// mirror link and anti-entropy: registry/pair) or a raft cluster.
//
// The two meet at the committed batch. The backend commits writes in
// order and hands each durable batch to Front.Publish while it holds its
// records locked, so that a Read (which runs under the same lock) sees a
// batch either entirely and before it was published, or not at all. That
// is what lets a subscription take a snapshot and then receive exactly
// the changes after it.

// Backend stores, orders and replicates a center's records.
type Backend interface {
	// ID is the center's stable id (carried in every version it stamps and
	// every push it sends).
	ID() string
	// Start starts committing; every committed batch goes to front.Publish
	// in commit order. The backend stops when ctx ends; Close releases its
	// store afterwards.
	Start(ctx context.Context, front Front) error
	Close() error
	// Write commits ops and then calls done with one result per op, or
	// with an error if nothing was committed (ErrUnavailable when the
	// store cannot persist, ErrClosed when stopping). done runs on the
	// backend's committing goroutine and must not block.
	Write(ops []Op, done func([]Result, error))
	// Read runs f with a consistent view of the records: no batch is
	// published while f runs. f must not block or call Write.
	Read(f func(View))
	// ServePeer handles a frame of a connection in role peer (the pair's
	// replication; a backend without peers refuses it). A returned error
	// is sent as the reply; wrapped in Fatal it closes the connection.
	ServePeer(p PeerConn, f wire.Frame) error
	// Probe makes one durable write, to learn whether the store persists
	// again after failures.
	Probe() error
	// HeartbeatSlack is how much later than its TTL an instance whose
	// record came from elsewhere may expire: the time heartbeats received
	// by the other center take to be forwarded here (0: heartbeats are not
	// forwarded, and the front need not collect them for TakeTouched).
	HeartbeatSlack() time.Duration
	// Judges reports whether this center judges the liveness of an
	// instance record: holds a lease for it and expires it on a missed
	// TTL. In the pair both centers judge every instance (heartbeats are
	// forwarded to the peer); in a cluster a center judges those
	// registered through it. The front calls it from Publish, that is with
	// the backend's records locked: it must not take that lock.
	Judges(r *wire.Record) bool
}

// Front is what a backend calls back.
type Front interface {
	// Publish makes a durable batch visible: subscribers, leases, metrics.
	// It is called in commit order with the backend's records locked.
	Publish(changes []Change, rev uint64)
	// StoreFailed reports a failed store transaction (health).
	StoreFailed(err error)
	// Touch renews the leases of instances heartbeated at the other center
	// and returns the keys it has no lease for.
	Touch(keys []string) (missing []string)
	// TakeTouched returns the instance keys heartbeated here since the last
	// call, for forwarding to the other center.
	TakeTouched() []string
}

// View is a consistent view of the records (see Backend.Read).
type View interface {
	// Rev is the last revision issued.
	Rev() uint64
	// Len is the number of records, tombstones included.
	Len() int
	// Get returns the record of key (perhaps a tombstone), or nil.
	Get(key string) *wire.Record
	// Scan calls fn for every record, tombstones included, in no order,
	// until fn returns false. Records are immutable: they may be kept.
	Scan(fn func(*wire.Record) bool)
	// CanResume reports whether the changes after from can still be told
	// (from is not older than a forgotten tombstone, nor in the future).
	CanResume(from uint64) bool
}

// OpKind says what an Op does.
type OpKind uint8

// Operations the front asks of a backend.
const (
	OpPut    OpKind = iota + 1 // a client's write
	OpDelete                   // a client's delete: a tombstone
	OpExpire                   // liveness: a tombstone, if the record is still at Expect
)

// Op is one write.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // OpPut
	// After is the highest version the client has seen (see
	// docs/PROTOCOL.md): a backend that orders by clocks moves past it.
	After uint64
	// WID names the client's write on every attempt (see docs/PROTOCOL.md).
	WID    string
	Expect wire.Version // OpExpire
	// ConnID and TTL come back in the Change: an instance tied to its
	// connection, and its TTL.
	ConnID uint64
	TTL    time.Duration
}

// Result is what became of one Op.
type Result struct {
	Version wire.Version
	Rev     uint64
	Applied bool
	// Absent: a delete found no live record; a backend may still have
	// written a fence at Version (see docs/PROTOCOL.md). It answers
	// not_found.
	Absent bool
	Err    error
}

// Change is one step of a committed batch.
type Change struct {
	Key string
	Rec *wire.Record // nil: the key was forgotten (a tombstone purged)
	// FromPeer: the change came from the other center.
	FromPeer bool
	ConnID   uint64
	TTL      time.Duration
}

// PeerConn is the side of a connection in role peer that a backend answers
// on.
type PeerConn interface {
	// Send queues a reply.
	Send(t wire.MsgType, id uint64, body any) error
	// SendPaced queues a large reply at the pace of the connection.
	SendPaced(t wire.MsgType, id uint64, body any) error
	// ReplyErr answers a request with an error frame.
	ReplyErr(id uint64, err error)
	// MaxFrame is the largest frame the connection may carry.
	MaxFrame() int
}

// Fatal marks an error after which the connection is closed.
func Fatal(err error) error { return errFatal{err} }

type errFatal struct{ err error }

func (e errFatal) Error() string { return e.err.Error() }
func (e errFatal) Unwrap() error { return e.err }

// MapView is the View of a backend that keeps its records in a map, read
// under the backend's lock: the records by key, the last revision issued,
// and the highest revision whose tombstone was forgotten (changes after an
// older revision can no longer be told).
type MapView struct {
	Recs         map[string]*wire.Record
	Rev          uint64
	CompactedRev uint64
}

// mapView adapts MapView to View (whose Rev is a method).
type mapView struct{ *MapView }

// AsView returns v as a View.
func (v *MapView) AsView() View { return mapView{v} }

func (v mapView) Rev() uint64                 { return v.MapView.Rev }
func (v mapView) Len() int                    { return len(v.Recs) }
func (v mapView) Get(key string) *wire.Record { return v.Recs[key] }
func (v mapView) Scan(fn func(*wire.Record) bool) {
	for _, r := range v.Recs {
		if !fn(r) {
			return
		}
	}
}
func (v mapView) CanResume(from uint64) bool { return from >= v.CompactedRev && from <= v.MapView.Rev }

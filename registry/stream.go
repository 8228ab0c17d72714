package registry

import (
	"context"
	"fmt"
	"github.com/shmreg/shmreg/registry/internal/wire"
	"sync"
)

// Batch is one delivery of a subscription.
type Batch struct {
	// Snapshot: the batch replaces everything under Prefixes (all the
	// subscription's prefixes for the first batch); Records are the live
	// records there. Otherwise Records are changes in revision order;
	// Deleted ones are deletes.
	Snapshot bool
	Prefixes []string
	Records  []Record
	// Rev is the center's revision this batch brings the subscriber to; pass
	// it to Subscribe after a reconnect to the same center to resume.
	Rev uint64
	// CenterID is the center that issued Rev.
	CenterID string
}

// Subscription is a stream of batches from one center.
type Subscription struct {
	conn *Conn
	id   uint64

	mu      sync.Mutex
	queue   []Batch
	partial *Batch
	err     error
	notify  chan struct{}
}

// Subscribe subscribes to the records under prefixes ("" is everything).
// The first batch is a snapshot, or, if fromRev is a revision this center
// issued and can still resume from, the changes since it.
func (c *Conn) Subscribe(ctx context.Context, prefixes []string, fromRev uint64) (*Subscription, error) {
	if len(prefixes) == 0 {
		return nil, fmt.Errorf("%w: subscribe needs at least one prefix", ErrInvalid)
	}
	s := &Subscription{conn: c, id: c.nextID.Add(1), notify: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.subs[s.id] = s
	c.mu.Unlock()
	if err := c.call(ctx, wire.MsgSubscribe, &wire.SubscribeMsg{SubID: s.id, Prefixes: prefixes, FromRev: fromRev}, wire.MsgOK, nil); err != nil {
		c.mu.Lock()
		delete(c.subs, s.id)
		c.mu.Unlock()
		return nil, err
	}
	return s, nil
}

// Next returns the next batch, waiting for one. It fails once the
// connection is closed (after the batches already received).
func (s *Subscription) Next(ctx context.Context) (Batch, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			b := s.queue[0]
			s.queue[0] = Batch{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return b, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return Batch{}, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

// AddPrefixes extends the subscription; a snapshot batch of the new
// prefixes follows.
func (s *Subscription) AddPrefixes(ctx context.Context, prefixes []string) error {
	return s.conn.call(ctx, wire.MsgAddPrefixes, &wire.SubscribeMsg{SubID: s.id, Prefixes: prefixes}, wire.MsgOK, nil)
}

// Close ends the subscription (the connection stays open).
func (s *Subscription) Close(ctx context.Context) error {
	s.conn.mu.Lock()
	delete(s.conn.subs, s.id)
	s.conn.mu.Unlock()
	s.fail(ErrClosed)
	return s.conn.call(ctx, wire.MsgUnsubscribe, &wire.SubIDMsg{SubID: s.id}, wire.MsgOK, nil)
}

// deliver adds a push frame; frames with More are joined into one batch.
func (s *Subscription) deliver(m wire.PushMsg) {
	s.mu.Lock()
	if s.partial == nil {
		s.partial = &Batch{Snapshot: m.Snapshot, Prefixes: m.Prefixes, CenterID: m.CenterID}
	}
	s.partial.Records = append(s.partial.Records, m.Records...)
	s.partial.Rev = m.Rev
	if !m.More {
		s.queue = append(s.queue, *s.partial)
		s.partial = nil
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Subscription) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

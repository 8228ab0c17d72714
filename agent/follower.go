package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// follower is the goroutine that owns the region's content. Every field is
// touched only by it (after init), so none needs a lock; what others may
// read is copied into Agent.status.
type follower struct {
	a *Agent

	prefixes []string // subscribed: configured ∪ dynamic
	dynamic  []string // added through the control socket
	complete []string // prefixes the region holds completely at the recorded place (see subscriptionState)
	saved    subscriptionState

	center string // center the region follows (its place)
	rev    uint64 // last revision applied from center; 0 while holds are pending or before any batch

	held      map[string]heldDelete // suspect deletions not applied yet
	refreshed map[string]uint64     // key -> center revision of a refresh newer than the stream
	waiters   []*request            // subscribe requests waiting for their snapshot

	fault *regionFault // a commit the region refused, until it goes through; nil while the region takes commits

	conn *registry.Conn // current connection, nil between connections
	sub  *registry.Subscription
	addr string
	ever bool // connected at least once

	appliedRev atomic.Uint64 // f.rev of the last batch applied, for the pump's lag gauge
}

// request is a control operation for the follower.
type request struct {
	op       string
	prefixes []string
	key      string
	reply    chan error // capacity 1
}

func (f *follower) init(a *Agent, st subscriptionState) {
	f.a = a
	f.saved = st
	f.complete = st.Prefixes
	f.dynamic = st.Dynamic
	f.prefixes = normalizePrefixes(append(slices.Clone(a.opts.Prefixes), st.Dynamic...))
	f.center, f.rev = a.w.Place()
	f.held = make(map[string]heldDelete)
	f.refreshed = make(map[string]uint64)
}

// run connects to the centers in turn until ctx ends: it follows one until
// its connection fails, then moves to the next.
//
// Every failure is followed by a wait from one backoff (see backoff): a
// round in which no center answered, and a follow that ended, whatever
// ended it. Only a follow that lasted StableAfter starts the backoff over.
// So a failover after a healthy stream waits about RetryMin, while a center
// that accepts connections and then drops them, or an agent that cannot
// keep up, settles at one attempt per RetryMax instead of spinning on the
// centers.
//
// A region the agent cannot write ends the follow too, but it is not the
// center's fault: the follower mends the region first, without a
// connection (see regionFault), then comes back to the same center.
func (f *follower) run(ctx context.Context) {
	defer f.failWaiters(ErrStopped)
	opts := f.a.opts
	retry := backoff{min: opts.RetryMin, max: opts.RetryMax}
	next := 0
	for ctx.Err() == nil {
		if f.fault != nil {
			f.mend(ctx, &retry)
			continue
		}
		idx, conn, err := f.dialAny(ctx, next)
		if err != nil {
			wait := retry.next()
			f.a.log.Warn("no center reachable", "err", err, "retry_in", wait)
			f.a.updateStatus(func(s *Status) { s.LastError = err.Error() })
			f.idle(ctx, wait)
			continue
		}
		start := time.Now()
		err = f.follow(ctx, conn, opts.Centers[idx])
		conn.Close()
		f.conn, f.sub = nil, nil
		f.a.metrics.connected.Set(0)
		f.a.updateStatus(func(s *Status) {
			s.Connected = false
			if err != nil && ctx.Err() == nil {
				s.LastError = err.Error()
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= opts.StableAfter {
			retry.reset()
		}
		if f.fault != nil {
			next = idx // mend, then resume from this center
			continue
		}
		wait := retry.next()
		next = (idx + 1) % len(opts.Centers) // fail over to the other first
		if next != idx {
			f.a.log.Warn("lost center; failing over", "addr", opts.Centers[idx], "to", opts.Centers[next], "err", err, "retry_in", wait)
		} else {
			f.a.log.Warn("lost center; reconnecting", "addr", opts.Centers[idx], "err", err, "retry_in", wait)
		}
		f.idle(ctx, wait)
	}
}

// idle waits for d while serving control requests (which cannot reach a
// center now).
func (f *follower) idle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case req := <-f.a.reqs:
			f.handle(ctx, req)
		}
	}
}

// dialAny tries every center once, starting at start.
func (f *follower) dialAny(ctx context.Context, start int) (int, *registry.Conn, error) {
	opts := f.a.opts
	var errs []error
	for i := range opts.Centers {
		idx := (start + i) % len(opts.Centers)
		dctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
		conn, err := registry.Dial(dctx, opts.Centers[idx], registry.DialOptions{
			Role: registry.RoleAgent, Token: opts.Token, TLS: opts.TLS,
			KeepAlive: opts.KeepAlive, Name: "shmreg-agent",
		})
		cancel()
		if err == nil {
			return idx, conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return 0, nil, dialErrors(errs)
}

// dialErrors is a round in which no center answered: it says "no center
// available" once, then what each center's dial said, and errors.Is and
// errors.As see every one of them.
type dialErrors []error

func (e dialErrors) Error() string {
	prefix := registry.ErrUnavailable.Error() + ": "
	parts := make([]string, len(e))
	all := true
	for i, err := range e {
		parts[i] = err.Error()
		if strings.HasPrefix(parts[i], prefix) {
			parts[i] = parts[i][len(prefix):]
		} else {
			all = false // a refusal (a wrong token, say): said as it is
		}
	}
	if all {
		return prefix + strings.Join(parts, "; ")
	}
	return strings.Join(parts, "; ")
}

func (e dialErrors) Unwrap() []error { return e }

// event is what the pump hands the follower: a batch or the end.
type event struct {
	b   registry.Batch
	err error
}

// follow subscribes on conn and applies what it pushes until the
// connection fails or ctx ends.
func (f *follower) follow(ctx context.Context, conn *registry.Conn, addr string) error {
	center := conn.CenterID()
	reconnect := f.ever
	if reconnect {
		f.a.metrics.reconnects.Inc()
	}
	failover := f.center != "" && f.center != center
	if failover {
		f.a.metrics.failovers.Inc()
	}
	f.ever = true
	// Resume only from our own place on this very center, and only if the
	// region holds exactly the prefixes we subscribe to; anything else
	// takes a snapshot, applied by diff.
	var fromRev uint64
	if f.center == center && f.rev > 0 && slices.Equal(f.complete, f.prefixes) {
		fromRev = f.rev
	}
	clear(f.refreshed) // revisions are per center and per stream
	sub, err := conn.Subscribe(ctx, f.prefixes, fromRev)
	if err != nil {
		return err
	}
	f.conn, f.sub, f.addr = conn, sub, addr
	f.a.metrics.connected.Set(1)
	f.a.updateStatus(func(s *Status) {
		s.Connected, s.CenterAddr, s.LastError = true, addr, ""
		if reconnect {
			s.Reconnects++
		}
		if failover {
			s.Failovers++
		}
	})
	f.a.log.Info("following center", "addr", addr, "center", center, "from_rev", fromRev, "failover", failover)

	pctx, stop := context.WithCancel(ctx)
	events := make(chan event)
	pumped := make(chan struct{})
	var received atomic.Uint64 // newest revision the pump took from the stream
	go func() {
		defer close(pumped)
		for {
			b, err := sub.Next(pctx)
			if err == nil {
				received.Store(b.Rev)
				f.a.metrics.revisionLag.Set(float64(b.Rev - min(b.Rev, f.appliedRev.Load())))
			}
			select {
			case events <- event{b, err}:
			case <-pctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { stop(); <-pumped }()

	var holdTimer *time.Timer
	defer func() {
		if holdTimer != nil {
			holdTimer.Stop()
		}
	}()
	first := true
	for {
		var holdC <-chan time.Time
		if d, ok := f.nextHoldDeadline(); ok {
			if holdTimer == nil {
				holdTimer = time.NewTimer(time.Until(d))
			} else {
				holdTimer.Reset(time.Until(d))
			}
			holdC = holdTimer.C
		}
		select {
		case ev := <-events:
			if ev.err != nil {
				return ev.err
			}
			if err := f.apply(center, ev.b, first); err != nil {
				return err
			}
			f.appliedRev.Store(ev.b.Rev)
			f.a.metrics.revisionLag.Set(float64(received.Load() - min(received.Load(), ev.b.Rev)))
			first = false
		case req := <-f.a.reqs:
			f.handle(ctx, req)
			if f.fault != nil {
				return f.fault.error() // a refresh the region refused
			}
		case <-holdC:
			if err := f.resolveHolds(ctx, center); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handle serves one control request.
func (f *follower) handle(ctx context.Context, req *request) {
	switch req.op {
	case OpSubscribe:
		f.subscribe(ctx, req)
	case OpRefresh:
		req.reply <- f.refresh(ctx, req.key)
	default:
		req.reply <- errors.New("agent: unknown operation " + req.op)
	}
}

// subscribe adds prefixes. The reply waits for the snapshot of the new
// prefixes to be applied (or for the agent to stop).
func (f *follower) subscribe(ctx context.Context, req *request) {
	var add []string
	for _, p := range normalizePrefixes(req.prefixes) {
		if !underAny(p, f.prefixes) {
			add = append(add, p)
		}
	}
	if len(add) == 0 {
		req.reply <- nil
		return
	}
	f.prefixes = normalizePrefixes(append(f.prefixes, add...))
	f.dynamic = normalizePrefixes(append(f.dynamic, add...))
	// Saved before subscribing: a crash from here on leaves a state whose
	// subscribed set differs from the complete one, which forces a full
	// resync next time.
	if err := f.saveState(); err != nil {
		f.a.log.Warn("save subscription state", "err", err)
	}
	f.a.updateStatus(func(s *Status) { s.Prefixes = slices.Clone(f.prefixes) })
	req.prefixes = add
	f.waiters = append(f.waiters, req)
	if f.sub == nil {
		return // the next connection subscribes to everything
	}
	if err := f.sub.AddPrefixes(ctx, add); err != nil {
		// The connection is failing; the next one subscribes to everything.
		f.a.log.Warn("add prefixes", "err", err)
	}
}

// answerWaiters replies to the subscribe requests whose prefixes the region
// now holds completely.
func (f *follower) answerWaiters() {
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		done := true
		for _, p := range w.prefixes {
			if !underAny(p, f.complete) {
				done = false
			}
		}
		if done {
			w.reply <- nil
		} else {
			keep = append(keep, w)
		}
	}
	clear(f.waiters[len(keep):])
	f.waiters = keep
}

func (f *follower) failWaiters(err error) {
	for _, w := range f.waiters {
		w.reply <- err
	}
	f.waiters = nil
}

// saveState writes the subscription state if it changed.
func (f *follower) saveState() error {
	st := subscriptionState{Prefixes: slices.Clone(f.complete), Dynamic: slices.Clone(f.dynamic)}
	if slices.Equal(st.Prefixes, f.saved.Prefixes) && slices.Equal(st.Dynamic, f.saved.Dynamic) {
		return nil
	}
	if err := saveState(f.a.state, st); err != nil {
		return err
	}
	f.saved = st
	return nil
}

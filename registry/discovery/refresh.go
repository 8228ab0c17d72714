package discovery

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// Refresh asks the agent, over its control socket (Options.AgentSocket),
// to rewrite one key from a center, and returns once the agent answered:
// nil means the region now holds the center's current entry for key.
// Nothing else in the region is touched. Concurrent refreshes of the same
// key share one request.
//
// Protocol: one JSON object per line each way, one request and one reply
// per connection: {"op":"refresh","key":"K"} answered by {"ok":true} or
// {"ok":false,"error":"..."}.
func (c *Catalog) Refresh(ctx context.Context, key string) error {
	call := c.refresher.start(key)
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refresher dedupes refresh requests: while one for a key is in flight,
// later callers wait for its answer instead of sending another.
type refresher struct {
	c        *Catalog
	mu       sync.Mutex
	inflight map[string]*refreshCall
	lastAsk  map[string]time.Time // when background() last asked for a key
}

// background asks for a refresh of key unless one was asked for within
// Options.StaleRefreshInterval. It does not wait.
func (r *refresher) background(key string) {
	now := time.Now()
	r.mu.Lock()
	if t, ok := r.lastAsk[key]; ok && now.Sub(t) < r.c.opts.StaleRefreshInterval {
		r.mu.Unlock()
		return
	}
	if len(r.lastAsk) >= 1024 { // forget old entries rather than grow
		for k, t := range r.lastAsk {
			if now.Sub(t) >= r.c.opts.StaleRefreshInterval {
				delete(r.lastAsk, k)
			}
		}
	}
	r.lastAsk[key] = now
	r.mu.Unlock()
	r.start(key)
}

type refreshCall struct {
	done chan struct{} // closed when err is set
	err  error
}

func newRefresher(c *Catalog) *refresher {
	return &refresher{c: c, inflight: map[string]*refreshCall{}, lastAsk: map[string]time.Time{}}
}

// start returns the in-flight call for key, starting one if there is none.
// The request runs detached from any caller (bounded by RefreshTimeout and
// by Close), so a caller giving up does not cancel it for the others.
func (r *refresher) start(key string) *refreshCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	if call := r.inflight[key]; call != nil {
		return call
	}
	call := &refreshCall{done: make(chan struct{})}
	if r.c.opts.AgentSocket == "" {
		call.err = fmt.Errorf("refresh %s: %w", key, ErrNoAgent)
		close(call.done)
		return call
	}
	r.inflight[key] = call
	ok := r.c.goTracked(func() {
		ctx, cancel := context.WithTimeout(r.c.ctx, r.c.opts.RefreshTimeout)
		err := askRefresh(ctx, r.c.opts.AgentSocket, key)
		cancel()
		if err != nil {
			r.c.opts.Logger.Warn("discovery: refresh failed", "key", key, "err", err)
		}
		r.finish(key, call, err)
	})
	if !ok {
		delete(r.inflight, key)
		call.err = ErrClosed
		close(call.done)
	}
	return call
}

func (r *refresher) finish(key string, call *refreshCall, err error) {
	r.mu.Lock()
	delete(r.inflight, key)
	r.mu.Unlock()
	call.err = err
	close(call.done)
}

// controlRequest and controlReply are the agent control socket's lines.
type controlRequest struct {
	Op  string `json:"op"`
	Key string `json:"key"`
}

type controlReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// maxReplyLine bounds the reply line read from the agent.
const maxReplyLine = 64 << 10

// askRefresh sends one refresh request and reads its reply.
func askRefresh(ctx context.Context, socket, key string) error {
	fail := func(err error) error { return fmt.Errorf("%w: %s: %w", ErrRefresh, key, err) }
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Close the connection if ctx ends first (Close, not only a deadline).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := json.Marshal(controlRequest{Op: "refresh", Key: key})
	if err != nil {
		return fail(err)
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return fail(err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 256), maxReplyLine)
	if !sc.Scan() {
		err := sc.Err()
		if err == nil {
			err = fmt.Errorf("agent closed the connection without a reply")
		}
		return fail(err)
	}
	var reply controlReply
	if err := json.Unmarshal(sc.Bytes(), &reply); err != nil {
		return fail(fmt.Errorf("bad reply from agent: %w", err))
	}
	if !reply.OK {
		if reply.Error == "" {
			reply.Error = "agent refused without a reason"
		}
		return fail(fmt.Errorf("agent: %s", reply.Error))
	}
	return nil
}

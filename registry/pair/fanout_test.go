package pair

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// mirror is what a subscriber holds: it applies batches as an agent does
// (a snapshot replaces its prefixes, changes apply in order) and checks
// that revisions never go back.
type mirror struct {
	t        *testing.T
	name     string
	prefixes []string
	mu       sync.Mutex
	kv       map[string]string
	keyRev   map[string]uint64 // the revision of what kv holds for a key
	rev      uint64
	batches  int
}

func (m *mirror) apply(b registry.Batch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	if b.Rev < m.rev {
		m.t.Errorf("%s: revision went back from %d to %d", m.name, m.rev, b.Rev)
	}
	m.rev = b.Rev
	if b.Snapshot {
		for k := range m.kv {
			if hasPrefix(k, b.Prefixes) {
				delete(m.kv, k)
			}
		}
	}
	for _, r := range b.Records {
		if !hasPrefix(r.Key, m.prefixes) {
			m.t.Errorf("%s: got %s, outside its prefixes %q", m.name, r.Key, m.prefixes)
		}
		if r.Rev < m.keyRev[r.Key] {
			m.t.Errorf("%s: %s went back from revision %d to %d", m.name, r.Key, m.keyRev[r.Key], r.Rev)
		}
		m.keyRev[r.Key] = r.Rev
		if r.Deleted {
			delete(m.kv, r.Key)
		} else {
			m.kv[r.Key] = string(r.Value)
		}
	}
}

func (m *mirror) equals(want map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.kv) != len(want) {
		return fmt.Errorf("%s holds %d keys, the center %d", m.name, len(m.kv), len(want))
	}
	for k, v := range want {
		if m.kv[k] != v {
			return fmt.Errorf("%s: %s = %q, the center has %q", m.name, k, m.kv[k], v)
		}
	}
	return nil
}

func hasPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// TestFanOutModel: subscribers to overlapping prefix sets, some from the
// start, some joining mid-stream, some adding prefixes mid-stream, while
// writers put and delete at random; in the end every subscriber holds
// exactly the center's records under its prefixes, having received them in
// revision order and nothing outside them.
func TestFanOutModel(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, MaxSubscriptions: 64}})
	ctx := tctx(t)
	sets := [][]string{{"app/"}, {"app/a/"}, {"cfg/"}, {"app/b/", "cfg/x"}, {""}}
	conns := []*registry.Conn{dialT(t, c.Addr().String(), registry.DialOptions{}), dialT(t, c.Addr().String(), registry.DialOptions{})}
	var wg sync.WaitGroup
	var mirrors []*mirror
	var mmu sync.Mutex
	follow := func(i int, prefixes []string, add []string) {
		m := &mirror{t: t, name: fmt.Sprintf("sub%d%q", i, prefixes), prefixes: append([]string(nil), prefixes...), kv: map[string]string{}, keyRev: map[string]uint64{}}
		sub, err := conns[i%2].Subscribe(ctx, prefixes, 0)
		if err != nil {
			t.Error(err)
			return
		}
		mmu.Lock()
		mirrors = append(mirrors, m)
		mmu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				b, err := sub.Next(ctx)
				if err != nil {
					return
				}
				m.apply(b)
				if n++; n == 5 && add != nil {
					m.mu.Lock()
					m.prefixes = append(m.prefixes, add...)
					m.mu.Unlock()
					if err := sub.AddPrefixes(ctx, add); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for i := range 20 {
		var add []string
		if i%4 == 3 {
			add = []string{"cfg/y"}
		}
		follow(i, sets[i%len(sets)], add)
	}
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	keys := []string{"app/a/1", "app/a/2", "app/b/1", "app/b/2", "app/c/1", "cfg/x1", "cfg/x2", "cfg/y1", "cfg/z", "other/1"}
	var wwg sync.WaitGroup
	for w := range 4 {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 300 {
				k := keys[r.IntN(len(keys))]
				var err error
				if r.IntN(4) == 0 {
					_, err = admin.Delete(ctx, k)
					if err != nil && strings.Contains(err.Error(), "not found") {
						err = nil
					}
				} else {
					_, err = admin.Put(ctx, k, []byte(fmt.Sprint(w, "-", i)))
				}
				if err != nil {
					t.Error(err)
					return
				}
				if w == 0 && i == 150 {
					for j := range 10 { // late joiners
						follow(100+j, sets[j%len(sets)], nil)
					}
				}
			}
		}()
	}
	wwg.Wait()
	for _, m := range mirrors {
		eventually(t, 5*time.Second, m.name+" converges", func() bool {
			m.mu.Lock()
			prefixes := append([]string(nil), m.prefixes...)
			m.mu.Unlock()
			want := map[string]string{}
			for _, p := range prefixes {
				for _, r := range c.List(p) {
					want[r.Key] = string(r.Value)
				}
			}
			return m.equals(want) == nil
		})
	}
	for _, cn := range conns {
		cn.Close()
	}
	wg.Wait()
}

// TestFanOutEncodesOnce: a change that 60 subscribers of the same prefix
// receive is encoded once, not 60 times.
func TestFanOutEncodesOnce(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, MaxSubscriptions: 64}})
	ctx := tctx(t)
	conn := dialT(t, c.Addr().String(), registry.DialOptions{})
	var subs []*registry.Subscription
	for range 60 {
		s, err := conn.Subscribe(ctx, []string{"app/"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Next(ctx); err != nil { // the snapshot
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	before := metric(t, c, "push_encodes_total")
	pushesBefore := metric(t, c, "pushes_total")
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	const writes = 20
	for i := range writes {
		if _, err := admin.Put(ctx, fmt.Sprint("app/x/", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range subs {
		got := 0
		for got < writes {
			b, err := s.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got += len(b.Records)
		}
	}
	encodes := metric(t, c, "push_encodes_total") - before
	pushes := metric(t, c, "pushes_total") - pushesBefore
	t.Logf("%v pushes from %v encodings", pushes, encodes)
	if encodes > writes || pushes < 60*encodes {
		t.Fatalf("%v encodings for %v pushes of %d writes to 60 subscribers: want at most one encoding per write, shared by all", encodes, pushes, writes)
	}
}

// TestSlowSubscriberDoesNotHoldBackOthers: a connection that subscribes to
// everything and never reads falls back to catch-up and is cut off once it
// is MaxBacklog changes behind, while a subscriber that reads gets every
// change.
func TestSlowSubscriberDoesNotHoldBackOthers(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, MaxBacklog: 200}})
	ctx := tctx(t)
	slow, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.(*net.TCPConn).SetReadBuffer(4 << 10)
	r := &rawConn{t: t, nc: slow}
	hello, _ := wire.EncodeFrame(wire.MsgHello, 1, &wire.HelloMsg{Version: wire.ProtocolVersion, Role: wire.RoleAgent})
	r.sendRaw(hello)
	sub, _ := wire.EncodeFrame(wire.MsgSubscribe, 2, &wire.SubscribeMsg{SubID: 1, Prefixes: []string{""}})
	r.sendRaw(sub)

	fast := dialT(t, c.Addr().String(), registry.DialOptions{})
	s, err := fast.Subscribe(ctx, []string{""}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(ctx); err != nil {
		t.Fatal(err)
	}
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	value := make([]byte, 8<<10)
	const writes = 2000 // 16 MB: far more than the slow one's queue and socket buffers
	done := make(chan error, 1)
	go func() {
		got := 0
		for got < writes {
			b, err := s.Next(ctx)
			if err != nil {
				done <- err
				return
			}
			got += len(b.Records)
		}
		done <- nil
	}()
	for i := range writes {
		if _, err := admin.Put(ctx, fmt.Sprint("cfg/", i), value); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the reading subscriber did not get every change")
	}
	eventually(t, 5*time.Second, "the slow connection cut off", func() bool { return metric(t, c, "cut_off_total") == 1 && metric(t, c, "connections") == 2 })
}

// TestAddPrefixesKeepsPendingChanges: changes published but not yet pushed
// (the fan-out gathers for PushDelay) when a subscription adds prefixes
// still reach it, before the new prefixes' snapshot, and none goes back.
func TestAddPrefixesKeepsPendingChanges(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, PushDelay: 300 * time.Millisecond}})
	ctx := tctx(t)
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	conn := dialT(t, c.Addr().String(), registry.DialOptions{})
	sub, err := conn.Subscribe(ctx, []string{"cfg/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror{t: t, name: "sub", prefixes: []string{"cfg/", "app/"}, kv: map[string]string{}, keyRev: map[string]uint64{}}
	b, err := sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.apply(b)
	if _, err := admin.Put(ctx, "cfg/a", []byte("1")); err != nil { // pending for 300ms
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "app/b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := sub.AddPrefixes(ctx, []string{"app/"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cfg/a": "1", "app/b": "2"}
	deadline := time.Now().Add(3 * time.Second)
	for m.equals(want) != nil {
		if time.Now().After(deadline) {
			t.Fatal(m.equals(want))
		}
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		b, err := sub.Next(nctx)
		cancel()
		if err == nil {
			m.apply(b)
		}
	}
}

// TestFillStormSharesSnapshots: 40 subscriptions arriving while writes go
// on (each at a different revision) share a few snapshots, each followed
// by the changes since it, and every one ends with the center's records.
func TestFillStormSharesSnapshots(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, MaxSubscriptions: 64}})
	ctx := tctx(t)
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	for i := range 500 {
		if _, err := admin.Put(ctx, fmt.Sprint("cfg/", i), []byte("v0")); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := admin.Put(ctx, fmt.Sprint("cfg/", i%600), []byte(fmt.Sprint("v", i))); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	conn := dialT(t, c.Addr().String(), registry.DialOptions{})
	var subs []*registry.Subscription
	for range 40 {
		s, err := conn.Subscribe(ctx, []string{"cfg/"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	close(stop)
	<-writing
	rev := c.Rev()
	want := c.List("cfg/")
	for i, s := range subs {
		state, first := caughtUp(t, s, rev)
		if !first.Snapshot || fmt.Sprint(state) != fmt.Sprint(want) {
			t.Fatalf("subscription %d: first batch snapshot=%v, then %d records, the center %d", i, first.Snapshot, len(state), len(want))
		}
	}
	taken, shared := metric(t, c, "snapshots_taken_total"), metric(t, c, "snapshots_shared_total")
	t.Logf("40 subscriptions during writes: %v snapshots taken, %v shared", taken, shared)
	if taken+shared != 40 || taken > 10 {
		t.Fatalf("%v snapshots taken and %v shared for 40 subscriptions; want most shared", taken, shared)
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/internal/wire"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func etcdClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func dial(t testing.TB, addr string, role wire.Role) *registry.Conn {
	t.Helper()
	c, err := registry.Dial(tctx(t, 10*time.Second), addr, registry.DialOptions{Role: role, KeepAlive: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond every 50ms until it holds, failing after limit
// (a bound on liveness, not a measure of speed).
func eventually(t testing.TB, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listMap(ctx context.Context, c *registry.Conn, prefix string) (map[string]string, error) {
	recs, err := c.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(recs))
	for _, r := range recs {
		m[r.Key] = string(r.Value)
	}
	return m, nil
}

func diffMaps(got, want map[string]string) error {
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			return fmt.Errorf("%s: got %q (present %v), want %q", k, g, ok, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("%s: got %q, want absent", k, v)
		}
	}
	return nil
}

// A voter cut off from the majority (here: the other two are stopped)
// refuses writes with unavailable, the code on which clients fail over, and
// takes writes again once the majority is back.
func TestMinorityRefusesWrites(t *testing.T) {
	tc := startCluster(t, false)
	v1 := dial(t, tc.voters[0].addr, wire.RoleAdmin)
	ctx := tctx(t, time.Minute)
	if _, err := v1.Put(ctx, "cfg/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	tc.voters[1].signal(syscall.SIGSTOP)
	tc.voters[2].signal(syscall.SIGSTOP)
	_, err := v1.Put(ctx, "cfg/a", []byte("2"))
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("a write through a minority: got %v, want unavailable", err)
	}
	t.Logf("minority's answer: %v", err)
	if got, err := v1.Get(ctx, "cfg/a"); err != nil || string(got.Value) != "1" {
		t.Fatalf("the minority still serves what it holds: %v %v", got, err)
	}
	tc.voters[1].signal(syscall.SIGCONT)
	tc.voters[2].signal(syscall.SIGCONT)
	eventually(t, 20*time.Second, "writes through the healed voter", func() error {
		_, err := v1.Put(ctx, "cfg/a", []byte("3"))
		return err
	})
}

// keyModel is what a key may hold at the end: the last acknowledged state,
// or that of a write after it whose answer was lost.
type keyModel struct {
	acked    *string  // nil: absent
	possible []string // "\x00": absent
}

func (m *keyModel) ok(v string, present bool) bool {
	if !present {
		v = "\x00"
	}
	if (m.acked == nil && v == "\x00") || (m.acked != nil && *m.acked == v) {
		return true
	}
	return slices.Contains(m.possible, v)
}

// Three voters and a listener. Writes go through every center; a subscriber
// and a writer (the SDK, failing over) follow the leader; the leader is
// SIGKILLed during a stream of random puts and deletes. Then: writes are
// taken again within a few election timeouts, the listener is promoted and
// the cluster has three healthy voters again, the subscriber resumed on
// another center by revision (no second snapshot) and holds what the
// cluster holds, every acknowledged write is there (model check), the SDK's
// instance survives and a bare connection's instance, registered through
// the dead leader, goes with its lease.
func TestKillLeaderPromotesListener(t *testing.T) {
	tc := startCluster(t, true)
	ctx := tctx(t, 2*time.Minute)
	cli := etcdClient(t, tc.voters[0].clientURL, tc.voters[1].clientURL, tc.voters[2].clientURL)

	// Writes through every center, seen by every center.
	conns := map[string]*registry.Conn{}
	for _, n := range tc.all() {
		conns[n.name] = dial(t, n.addr, wire.RoleAdmin)
		if _, err := conns[n.name].Put(ctx, "each/"+n.name, []byte(n.name)); err != nil {
			t.Fatalf("write through %s: %v", n.name, err)
		}
	}
	for _, n := range tc.all() {
		eventually(t, 10*time.Second, "writes through every center seen by "+n.name, func() error {
			m, err := listMap(ctx, conns[n.name], "each/")
			if err != nil {
				return err
			}
			if len(m) != 4 {
				return fmt.Errorf("%d of 4", len(m))
			}
			return nil
		})
	}

	st, err := ReadStatus(ctx, cli, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var leader *node
	addrs := []string{}
	for _, n := range tc.all() {
		if n.name == st.Leader {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("no leader in %+v", st)
	}
	addrs = append(addrs, leader.addr)
	for _, n := range tc.all() {
		if n != leader {
			addrs = append(addrs, n.addr)
		}
	}

	// An SDK instance and a bare connection's instance, both through the leader.
	sdk, err := registry.NewClient(registry.ClientOptions{Addrs: addrs, Name: "sdk"})
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	if err := sdk.Register(ctx, wire.Instance{Service: "web", ID: "sdk", Address: "10.0.0.1", Port: 80, TTL: 3 * time.Second}, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conns[leader.name].Register(ctx, wire.Instance{Service: "web", ID: "orphan", Address: "10.0.0.2", Port: 80, TTL: time.Minute}, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}

	// The subscriber, on the leader first.
	subc, err := registry.NewClient(registry.ClientOptions{Addrs: addrs, Role: wire.RoleAgent, Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	defer subc.Close()
	sub, err := subc.Subscribe(ctx, []string{""})
	if err != nil {
		t.Fatal(err)
	}
	var subMu sync.Mutex
	subState := map[string]string{}
	batches, snapshots := 0, 0
	subCtx, stopSub := context.WithCancel(ctx)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for {
			b, err := sub.Next(subCtx)
			if err != nil {
				return
			}
			subMu.Lock()
			batches++
			if b.Snapshot {
				snapshots++
				for k := range subState {
					if hasAnyPrefix(k, b.Prefixes) {
						delete(subState, k)
					}
				}
			}
			for _, r := range b.Records {
				if r.Deleted {
					delete(subState, r.Key)
				} else {
					subState[r.Key] = string(r.Value)
				}
			}
			subMu.Unlock()
		}
	}()

	// The writer: random puts and deletes over a few keys, through the SDK.
	w, err := registry.NewClient(registry.ClientOptions{Addrs: addrs, Role: wire.RoleAdmin, Name: "writer"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	model := map[string]*keyModel{}
	var ackTimes []time.Time
	var killedAt time.Time
	rng := rand.New(rand.NewPCG(1, 2))
	writeStart := time.Now()
	for i := 0; time.Since(writeStart) < 4*time.Second; i++ {
		if killedAt.IsZero() && time.Since(writeStart) > time.Second {
			killedAt = time.Now()
			leader.kill()
			t.Logf("SIGKILLed the leader %s after %d writes", leader.name, i)
		}
		k := fmt.Sprintf("m/k%02d", rng.IntN(24))
		km := model[k]
		if km == nil {
			km = &keyModel{}
			model[k] = km
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if rng.IntN(4) == 0 {
			_, err = w.Delete(wctx, k)
			if errors.Is(err, registry.ErrNotFound) {
				err = nil
			}
			if err == nil {
				km.acked, km.possible = nil, nil
			} else {
				km.possible = append(km.possible, "\x00")
			}
		} else {
			v := fmt.Sprintf("v%d", i)
			_, err = w.Put(wctx, k, []byte(v))
			if err == nil {
				km.acked, km.possible = &v, nil
			} else {
				km.possible = append(km.possible, v)
			}
		}
		cancel()
		if err == nil {
			ackTimes = append(ackTimes, time.Now())
		} else {
			t.Logf("write %d to %s: %v (its key may hold it or not)", i, k, err)
		}
	}
	// Writes are taken again within a few election timeouts of the kill.
	var resumed time.Duration = -1
	for _, at := range ackTimes {
		if at.After(killedAt) {
			resumed = at.Sub(killedAt)
			break
		}
	}
	if resumed < 0 || resumed > 20*testElectionMs*time.Millisecond {
		t.Fatalf("first acknowledged write %v after the leader's kill (election timeout %dms)", resumed, testElectionMs)
	}
	t.Logf("writes acknowledged again %v after the leader's SIGKILL (%d acknowledged in all)", resumed.Round(time.Millisecond), len(ackTimes))

	// The listener replaces the dead leader.
	eventually(t, 40*time.Second, "listener promoted, three healthy voters", func() error {
		st, err := ReadStatus(ctx, cli, time.Second)
		if err != nil {
			return err
		}
		var voters []string
		for _, m := range st.Members {
			if m.Role != "voter" || !m.Healthy {
				return fmt.Errorf("%s is a %s, healthy %v (%s)", m.Name, m.Role, m.Healthy, m.Err)
			}
			voters = append(voters, m.Name)
		}
		if len(voters) != 3 || !slices.Contains(voters, "l1") {
			return fmt.Errorf("voters %v", voters)
		}
		return nil
	})
	t.Logf("listener promoted and the dead voter removed %v after the kill", time.Since(killedAt).Round(time.Millisecond))

	var live []*node
	for _, n := range tc.all() {
		if n != leader {
			live = append(live, n)
		}
	}
	// Every acknowledged write, on every live center.
	for _, n := range live {
		eventually(t, 10*time.Second, "the model on "+n.name, func() error {
			got, err := listMap(ctx, conns[n.name], "m/")
			if err != nil {
				return err
			}
			for k, km := range model {
				v, ok := got[k]
				if !km.ok(v, ok) {
					return fmt.Errorf("%s holds %q (present %v); acknowledged %v, possible %q", k, v, ok, km.acked, km.possible)
				}
			}
			for k := range got {
				if model[k] == nil {
					return fmt.Errorf("%s was never written", k)
				}
			}
			return nil
		})
	}
	// The bare connection's instance went with the dead leader's lease; the
	// SDK's was registered again through another center.
	eventually(t, 20*time.Second, "instances after the leader's death", func() error {
		got, err := listMap(ctx, conns[live[0].name], "svc/")
		if err != nil {
			return err
		}
		if _, ok := got["svc/web/orphan"]; ok {
			return errors.New("svc/web/orphan outlived its center's lease")
		}
		if _, ok := got["svc/web/sdk"]; !ok {
			return errors.New("svc/web/sdk is gone")
		}
		return nil
	})
	// The subscriber moved to another center, resumed by revision (one
	// snapshot in all: the first batch), and holds what the cluster holds.
	eventually(t, 10*time.Second, "the subscriber equals the cluster", func() error {
		want, err := listMap(ctx, conns[live[0].name], "")
		if err != nil {
			return err
		}
		subMu.Lock()
		defer subMu.Unlock()
		return diffMaps(subState, want)
	})
	stopSub()
	<-subDone
	if snapshots != 1 {
		t.Fatalf("the subscriber got %d snapshots in %d batches: it should have resumed by revision", snapshots, batches)
	}
	t.Logf("subscriber: %d batches, one snapshot", batches)
}

func hasAnyPrefix(k string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

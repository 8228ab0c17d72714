package discovery_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/discovery"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// profileV1 is what the producer wrote before its upgrade; profileV2 is
// what it writes now, and what the reader expects.
type profileV1 struct {
	Name string `msgpack:"name"`
	Plan string `msgpack:"plan"`
}

type profileV2 struct {
	Name  string `msgpack:"name"`
	Plan  string `msgpack:"plan"`
	Quota int    `msgpack:"quota"`
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStaleEntryRefreshedEndToEnd runs the stale-entry path with the real
// pieces: a center, an agent with its control socket writing the region, and
// a catalog reading it.
//
// The region must hold an entry older than the center's while the agent
// believes it is up to date (otherwise the agent's own stream or resync
// would fix it, and the refresh would prove nothing). That is the state a
// lost push leaves, and the test makes it deterministically: the first agent
// fills the region while the center holds the old entry and stops; the
// producer upgrades and writes the new entry; the region's place is then
// advanced to the center's revision without the entry (standing in for the
// push that never arrived), so the second agent resumes from there and has
// nothing to apply. The region's old bytes are the ones the real agent wrote.
//
// GetInto with the new struct then reports ErrStale with the decoded value
// and asks the agent to refresh; the agent rewrites that one entry from the
// center in one commit; the next GetInto returns the fresh value. Nothing
// else is rewritten: every other entry (including another stale one) keeps
// its bytes, the entry count and the place are unchanged, the generation
// advanced by exactly one commit, and the agent wrote exactly one record.
func TestStaleEntryRefreshedEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	center, err := pair.New(pair.Options{Options: center.Options{Insecure: true, Listen: "127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := center.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := center.Shutdown(sctx); err != nil {
			t.Errorf("center shutdown: %v", err)
		}
	})
	admin, err := registry.Dial(ctx, center.Addr().String(), registry.DialOptions{Role: registry.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	put := func(key string, v []byte) {
		t.Helper()
		if _, err := admin.Put(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}

	const key = "cfg/shop/profile"
	// The old producer's entry, an unrelated entry still written by an old
	// producer (it stays stale: only the key asked for is refreshed), and
	// plain entries.
	put(key, marshal(t, profileV1{Name: "shop", Plan: "gold"}))
	put("cfg/billing/profile", marshal(t, profileV1{Name: "billing", Plan: "basic"}))
	for _, k := range []string{"cfg/a", "cfg/b", "cfg/c", "cfg/d"} {
		put(k, []byte("value of "+k))
	}
	const entries = 6

	region := filepath.Join(dir, "region")
	shmOpts := shm.Options{Dir: dir, Size: 4 << 20}
	agentOpts := agent.Options{
		Centers:  []string{center.Addr().String()},
		Region:   region,
		Shm:      shmOpts,
		Prefixes: []string{"cfg/"},
		Control:  filepath.Join(dir, "agent.sock"),
		RetryMin: 10 * time.Millisecond,
		RetryMax: 100 * time.Millisecond,
	}

	// The first agent fills the region from the center.
	first := startAgent(t, agentOpts)
	r, err := shm.Open(region, shmOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	waitRegion(ctx, t, r, "first agent filled the region", func() bool { return r.Len() == entries })
	stopAgent(t, first)

	// The producer upgrades. The region is advanced to the center's
	// revision without the entry: the push was lost.
	put(key, marshal(t, profileV2{Name: "shop", Plan: "gold", Quota: 42}))
	rev := center.Rev()
	w, err := shm.OpenWriter(region, shmOpts)
	if err != nil {
		t.Fatal(err)
	}
	var b shm.Batch
	b.SetPlace(center.ID(), rev)
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	// The second agent resumes from the region's place: its first batch is
	// the (empty) list of changes since, one commit.
	gen := r.Generation()
	second := startAgent(t, agentOpts)
	waitRegion(ctx, t, r, "second agent applied its resume batch", func() bool { return r.Generation() > gen })
	idle(ctx, t, second)
	if st := second.Status(); st.Batches != 1 || !st.LastResync.At.IsZero() {
		t.Fatalf("the agent applied %d batches, last snapshot %+v; want one resumed batch and no snapshot (a resync would fix the entry and the test would prove nothing)", st.Batches, st.LastResync)
	}

	c, err := discovery.Open(region, discovery.Options{Region: shmOpts, AgentSocket: agentOpts.Control})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // before the agent's cleanup: background refreshes end first

	// What the region holds before the stale read.
	before := contents(t, r)
	gen = r.Generation()
	place, placeRev := r.Place()
	applied := appliedRecords(t, second)
	seq := r.Seq()

	var got profileV2
	err = c.GetInto(key, &got)
	var stale *discovery.StaleError
	if !errors.Is(err, discovery.ErrStale) || !errors.As(err, &stale) {
		t.Fatalf("GetInto of the old entry = %v, want ErrStale", err)
	}
	if !slices.Equal(stale.Missing, []string{"quota"}) || stale.Key != key {
		t.Fatalf("stale error %+v, want key %s missing [quota]", stale, key)
	}
	if want := (profileV2{Name: "shop", Plan: "gold"}); got != want {
		t.Fatalf("stale value decoded as %+v, want %+v", got, want)
	}

	// The background refresh is one agent commit: wait for it on the
	// region's change sequence (the futex the agent wakes).
	if _, err := r.Wait(ctx, seq); err != nil {
		t.Fatalf("no commit after the stale read (refresh never applied): %v", err)
	}
	idle(ctx, t, second)
	got = profileV2{}
	if err := c.GetInto(key, &got); err != nil {
		t.Fatalf("GetInto after the refresh: %v", err)
	}
	if want := (profileV2{Name: "shop", Plan: "gold", Quota: 42}); got != want {
		t.Fatalf("refreshed value %+v, want %+v", got, want)
	}

	// Only that entry was written.
	after := contents(t, r)
	delete(before, key)
	delete(after, key)
	if !maps.Equal(before, after) {
		t.Fatalf("entries other than %s changed:\nbefore %q\nafter  %q", key, before, after)
	}
	if n := r.Len(); n != entries {
		t.Fatalf("region has %d entries after the refresh, want %d", n, entries)
	}
	if g := r.Generation(); g != gen+1 {
		t.Fatalf("generation went from %d to %d, want exactly one commit", gen, g)
	}
	if p, pr := r.Place(); p != place || pr != placeRev {
		t.Fatalf("place moved from %s@%d to %s@%d", place, placeRev, p, pr)
	}
	if n := appliedRecords(t, second) - applied; n != 1 {
		t.Fatalf("the agent wrote %v records for the refresh, want 1", n)
	}
	var legacy profileV2
	if err := c.GetInto("cfg/billing/profile", &legacy); !errors.Is(err, discovery.ErrStale) {
		t.Fatalf("the other old entry = %v, want it still stale (only the key asked for is refreshed)", err)
	}
}

func startAgent(t *testing.T, opts agent.Options) *agent.Agent {
	t.Helper()
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAgent(t, a) })
	return a
}

// stopAgent shuts an agent down (again, harmlessly, at cleanup).
func stopAgent(t *testing.T, a *agent.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("agent shutdown: %v", err)
	}
}

// waitRegion waits, on the region's change notification, until cond holds.
// Every change it waits for is a commit, so no polling interval is needed.
func waitRegion(ctx context.Context, t *testing.T, r *shm.Reader, what string, cond func() bool) {
	t.Helper()
	for {
		seq := r.Seq()
		if cond() {
			return
		}
		if _, err := r.Wait(ctx, seq); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// idle returns once the agent's follower has finished what it was doing
// (applying a batch, serving a refresh, and counting it in its metrics):
// the follower serves control requests one at a time between those, and a
// subscription to a prefix it already has is answered at once, without a
// commit.
func idle(ctx context.Context, t *testing.T, a *agent.Agent) {
	t.Helper()
	if err := a.Subscribe(ctx, []string{"cfg/"}); err != nil {
		t.Fatal(err)
	}
}

// contents returns every entry of the region.
func contents(t *testing.T, r *shm.Reader) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := r.Scan(nil, func(k, v []byte) bool { out[string(k)] = string(v); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// appliedRecords reads the agent's count of records written to the region.
func appliedRecords(t *testing.T, a *agent.Agent) float64 {
	t.Helper()
	mfs, err := a.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "shmreg_agent_applied_records_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("agent metrics lack shmreg_agent_applied_records_total")
	return 0
}

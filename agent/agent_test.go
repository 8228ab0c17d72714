package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runChild(role))
	}
	goleak.VerifyTestMain(m)
}

// TestFollowsCenter: the region fills with exactly the subscribed entries,
// then follows puts and deletes, and records its place.
func TestFollowsCenter(t *testing.T) {
	ca, cb := testPair(t)
	admin := dialAdmin(t, ca.Addr().String())
	ctx := context.Background()
	for i := range 3 {
		if _, err := admin.Put(ctx, fmt.Sprintf("cfg/web/k%d", i), []byte(fmt.Sprint("v", i))); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Put(ctx, fmt.Sprintf("cfg/db/k%d", i), []byte("other")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	a := startAgent(t, testOptions(dir, []string{ca.Addr().String(), cb.Addr().String()}, "cfg/web/"))
	path := a.Status().Region
	want := map[string]string{"cfg/web/k0": "v0", "cfg/web/k1": "v1", "cfg/web/k2": "v2"}
	eventually(t, "snapshot applied", sameAs(t, path, want))

	if _, err := admin.Put(ctx, "cfg/web/k1", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Delete(ctx, "cfg/web/k0"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, "cfg/db/k9", []byte("not mine")); err != nil {
		t.Fatal(err)
	}
	delete(want, "cfg/web/k0")
	want["cfg/web/k1"] = "new"
	eventually(t, "changes applied", sameAs(t, path, want))

	r, err := shm.Open(path, shm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	eventually(t, "place recorded", func() error {
		center, rev := r.Place()
		if center != ca.ID() || rev == 0 {
			return fmt.Errorf("place %s@%d, want %s@>0", center, rev, ca.ID())
		}
		return nil
	})
	st := a.Status()
	if !st.Connected || st.Center != ca.ID() || st.Entries != 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestSecondAgentRefused: two agents on one region are refused.
func TestSecondAgentRefused(t *testing.T) {
	ca, _ := testPair(t)
	dir := t.TempDir()
	opts := testOptions(dir, []string{ca.Addr().String()}, "svc/")
	startAgent(t, opts)
	_, err := New(opts)
	if !errors.Is(err, shm.ErrWriterBusy) {
		t.Fatalf("second agent: %v, want ErrWriterBusy", err)
	}
}

// TestFailoverResyncsByDiff: when the center goes away the agent moves to
// the other and resyncs by diff: unchanged entries are never touched (a
// reader polling them never misses one), changed ones are updated.
func TestFailoverResyncsByDiff(t *testing.T) {
	ca, cb := testPair(t)
	admin := dialAdmin(t, ca.Addr().String())
	ctx := context.Background()
	want := map[string]string{}
	for i := range 20 {
		k, v := fmt.Sprintf("cfg/k%02d", i), fmt.Sprint("v", i)
		if _, err := admin.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	dir := t.TempDir()
	a := startAgent(t, testOptions(dir, []string{ca.Addr().String(), cb.Addr().String()}, "cfg/"))
	path := a.Status().Region
	eventually(t, "filled", sameAs(t, path, want))
	// Both centers hold everything before A goes.
	eventually(t, "replicated", func() error {
		if n := len(cb.List("cfg/")); n != 20 {
			return fmt.Errorf("b has %d", n)
		}
		return nil
	})

	r, err := shm.Open(path, shm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	genBefore := r.Generation()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	stop := make(chan struct{})
	missing := make(chan string, 1)
	go func() {
		defer close(missing)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, k := range keys {
				if _, err := r.Get([]byte(k)); err != nil {
					missing <- k
					return
				}
			}
		}
	}()

	shutdownCenter(t, ca)
	adminB := dialAdmin(t, cb.Addr().String())
	if _, err := adminB.Put(ctx, "cfg/k05", []byte("changed")); err != nil {
		t.Fatal(err)
	}
	want["cfg/k05"] = "changed"
	eventually(t, "failed over", func() error {
		if st := a.Status(); st.Center != cb.ID() || st.Failovers != 1 {
			return fmt.Errorf("status center %s failovers %d", st.Center, st.Failovers)
		}
		return nil
	})
	eventually(t, "converged", sameAs(t, path, want))
	close(stop)
	if k, ok := <-missing; ok {
		t.Fatalf("a reader saw %s missing during failover", k)
	}
	// The resync touched only what changed: one commit for the snapshot
	// diff (whatever k05's state then) and at most one for the change.
	if d := r.Generation() - genBefore; d > 2 {
		t.Fatalf("failover made %d commits, want at most 2", d)
	}
}

// TestSuspectSnapshotHeld: a snapshot that would delete most of a service
// applies its additions but holds the mass deletion, until the hold expires
// and the center confirms.
func TestSuspectSnapshotHeld(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// A center that knows four instances of "web" fills the region ...
	full := startCenter(t, pair.Options{Options: center.Options{Insecure: true}})
	adminFull := dialAdmin(t, full.Addr().String())
	for i := range 4 {
		in := instance("web", fmt.Sprint("w", i), 8000+i)
		in.TTL = time.Minute
		if _, err := adminFull.Register(ctx, in, registry.RegisterOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// ... then a center that lost them (and has one new one) takes over.
	empty := startCenter(t, pair.Options{Options: center.Options{Insecure: true}})
	adminEmpty := dialAdmin(t, empty.Addr().String())
	newcomer := instance("web", "new", 9000)
	newcomer.TTL = time.Minute
	if _, err := adminEmpty.Register(ctx, newcomer, registry.RegisterOptions{}); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(dir, []string{full.Addr().String(), empty.Addr().String()}, "svc/")
	opts.SuspectHold = 500 * time.Millisecond
	a := startAgent(t, opts)
	path := a.Status().Region
	eventually(t, "filled", func() error {
		if n := len(regionContents(t, path)); n != 4 {
			return fmt.Errorf("%d entries", n)
		}
		return nil
	})
	shutdownCenter(t, full)
	eventually(t, "addition applied, deletions held", func() error {
		got := regionContents(t, path)
		if _, ok := got[newcomer.Key()]; !ok || len(got) != 5 {
			return fmt.Errorf("%d entries, newcomer present %v", len(got), ok)
		}
		if h := a.Status().Held; h != 4 {
			return fmt.Errorf("held %d", h)
		}
		return nil
	})
	eventually(t, "held deletions confirmed", sameAs(t, path, map[string]string{newcomer.Key(): mustEncode(t, newcomer)}))
	if h := a.Status().Held; h != 0 {
		t.Fatalf("still held: %d", h)
	}
}

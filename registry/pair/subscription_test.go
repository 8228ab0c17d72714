package pair

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

func nextT(t *testing.T, s *registry.Subscription) registry.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSubscribeSnapshotStreamResume(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: t.TempDir()})
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	ctx := tctx(t)
	for _, k := range []string{"cfg/a", "cfg/b", "other/x"} {
		if _, err := admin.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	agent := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	sub, err := agent.Subscribe(ctx, []string{"cfg/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := nextT(t, sub)
	if !b.Snapshot || keysOf(b.Records) != "cfg/a,cfg/b" || b.CenterID != c.ID() || b.Rev != c.Rev() {
		t.Fatalf("snapshot %+v", b)
	}
	// Changes arrive in order; keys outside the prefixes do not.
	admin.Put(ctx, "other/y", nil)
	admin.Put(ctx, "cfg/c", []byte("c"))
	admin.Delete(ctx, "cfg/a")
	var got []wire.Record
	for len(got) < 2 {
		b := nextT(t, sub)
		if b.Snapshot {
			t.Fatal("unexpected snapshot")
		}
		got = append(got, b.Records...)
	}
	if len(got) != 2 || got[0].Key != "cfg/c" || got[1].Key != "cfg/a" || !got[1].Deleted || got[0].Rev >= got[1].Rev {
		t.Fatalf("stream %+v", got)
	}
	lastRev := got[1].Rev

	// Resume after a reconnect: only what changed since.
	agent.Close()
	admin.Put(ctx, "cfg/d", []byte("d"))
	admin.Put(ctx, "cfg/b", []byte("b2"))
	agent2 := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	sub2, err := agent2.Subscribe(ctx, []string{"cfg/"}, lastRev)
	if err != nil {
		t.Fatal(err)
	}
	b = nextT(t, sub2)
	if b.Snapshot || keysOf(b.Records) != "cfg/d,cfg/b" || b.Rev != c.Rev() {
		t.Fatalf("resume batch %+v", b)
	}
	// A revision from the future (another center's) gets a snapshot (one
	// taken moments ago may be shared, followed by the changes since).
	sub3, err := agent2.Subscribe(ctx, []string{"cfg/"}, c.Rev()+1000)
	if err != nil {
		t.Fatal(err)
	}
	if state, first := caughtUp(t, sub3, c.Rev()); !first.Snapshot || keysOf(state) != "cfg/b,cfg/c,cfg/d" {
		t.Fatalf("future rev: first batch %+v, then %v", first, keysOf(state))
	}
	// Adding prefixes to a live subscription: a snapshot of the new ones,
	// then their changes.
	if err := sub3.AddPrefixes(ctx, []string{"other/"}); err != nil {
		t.Fatal(err)
	}
	if b := nextT(t, sub3); !b.Snapshot || keysOf(b.Records) != "other/x,other/y" || len(b.Prefixes) != 1 {
		t.Fatalf("added prefix snapshot %+v", b)
	}
	admin.Put(ctx, "other/z", nil)
	if b := nextT(t, sub3); keysOf(b.Records) != "other/z" {
		t.Fatalf("added prefix change %+v", b)
	}
}

func TestResumeTooOldGetsSnapshot(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}, TombstoneRetention: 50 * time.Millisecond})
	admin := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	ctx := tctx(t)
	admin.Put(ctx, "cfg/a", nil)
	admin.Put(ctx, "cfg/b", nil)
	rev := c.Rev()
	admin.Delete(ctx, "cfg/a")
	// The tombstone is purged after the retention: a subscriber at rev
	// could no longer learn of the delete from a diff.
	eventually(t, 3*time.Second, "tombstone purge", func() bool { return len(c.records()) == 1 })
	agent := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	sub, err := agent.Subscribe(ctx, []string{"cfg/"}, rev)
	if err != nil {
		t.Fatal(err)
	}
	if b := nextT(t, sub); !b.Snapshot || keysOf(b.Records) != "cfg/b" {
		t.Fatalf("too-old resume: %+v", b)
	}
}

func TestBurstGoesOutAsOneBatch(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}})
	agent := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	ctx := tctx(t)
	sub, err := agent.Subscribe(ctx, []string{""}, 0)
	if err != nil {
		t.Fatal(err)
	}
	nextT(t, sub)
	// 500 changes committed together (as a replicated batch is) reach the
	// subscriber as one batch in one push frame.
	pushesBefore := metric(t, c, "pushes_total")
	ops := make([]op, 500)
	for i := range ops {
		ops[i] = op{kind: opPut, key: fmt.Sprintf("cfg/%03d", i), value: []byte("v")}
	}
	if _, err := c.backend.write(ctx, false, ops...); err != nil {
		t.Fatal(err)
	}
	b := nextT(t, sub)
	if len(b.Records) != 500 {
		t.Fatalf("batch of %d records, want 500", len(b.Records))
	}
	if n := metric(t, c, "pushes_total") - pushesBefore; n != 1 {
		t.Fatalf("%v push frames for one burst", n)
	}
	for i := 1; i < len(b.Records); i++ {
		if b.Records[i].Rev != b.Records[i-1].Rev+1 {
			t.Fatal("batch not in revision order")
		}
	}
}

func TestLargeSnapshotSpansFrames(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true, MaxFrame: 128 << 10}})
	ops := make([]op, 300)
	val := make([]byte, 1000)
	for i := range ops {
		ops[i] = op{kind: opPut, key: fmt.Sprintf("cfg/%03d", i), value: val}
	}
	if _, err := c.backend.write(tctx(t), false, ops...); err != nil {
		t.Fatal(err)
	}
	agent := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAgent})
	sub, err := agent.Subscribe(tctx(t), []string{"cfg/"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b := nextT(t, sub); !b.Snapshot || len(b.Records) != 300 {
		t.Fatalf("snapshot of %d records", len(b.Records))
	}
	if metric(t, c, "pushes_total") < 3 {
		t.Fatalf("a 300 KB snapshot went out in %v frames of at most 128 KiB", metric(t, c, "pushes_total"))
	}
	list, err := agent.List(tctx(t), "cfg/")
	if err != nil || len(list) != 300 {
		t.Fatalf("multi-frame list: %d %v", len(list), err)
	}
}

// caughtUp applies a subscription's batches until it reaches rev and
// returns the live records it then holds, sorted, and its first batch.
func caughtUp(t *testing.T, sub *registry.Subscription, rev uint64) (state []wire.Record, first registry.Batch) {
	t.Helper()
	kv := map[string]wire.Record{}
	for n := 0; ; n++ {
		b := nextT(t, sub)
		if n == 0 {
			first = b
		}
		if b.Snapshot {
			for k := range kv {
				if hasPrefix(k, b.Prefixes) {
					delete(kv, k)
				}
			}
		}
		for _, r := range b.Records {
			if r.Deleted {
				delete(kv, r.Key)
			} else {
				kv[r.Key] = r
			}
		}
		if b.Rev >= rev {
			break
		}
	}
	for _, r := range kv {
		state = append(state, r)
	}
	sort.Slice(state, func(i, j int) bool { return state[i].Key < state[j].Key })
	return state, first
}

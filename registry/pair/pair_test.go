package pair

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// startPair starts two in-process centers whose replication links go through
// fault proxies: a's peer link is pb (to b), b's is pa (to a).
func startPair(t *testing.T) (a, b *Center, pa, pb *faultProxy) {
	pa = newFaultProxy(t, "")
	pb = newFaultProxy(t, "")
	a = testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: t.TempDir(), Peer: pb.addr()})
	b = testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: t.TempDir(), Peer: pa.addr()})
	pa.setTarget(a.Addr().String())
	pb.setTarget(b.Addr().String())
	eventually(t, 5*time.Second, "replication links up", func() bool { return a.PeerConnected() && b.PeerConnected() })
	return a, b, pa, pb
}

func sameRecords(a, b *Center) bool {
	ra, rb := a.records(), b.records()
	for i := range ra {
		ra[i].Rev = 0
	}
	for i := range rb {
		rb[i].Rev = 0
	}
	return reflect.DeepEqual(ra, rb)
}

func TestPairReplicatesWrites(t *testing.T) {
	a, b, _, _ := startPair(t)
	ca := dialT(t, a.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	ctx := tctx(t)
	v, err := ca.Put(ctx, "cfg/x", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "write reaches b", func() bool {
		r, err := b.Get("cfg/x")
		return err == nil && r.Version == v && string(r.Value) == "hello"
	})
	cb := dialT(t, b.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	if _, err := cb.Delete(ctx, "cfg/x"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "delete reaches a", func() bool {
		_, err := a.Get("cfg/x")
		return err != nil
	})
	eventually(t, 2*time.Second, "identical records", func() bool { return sameRecords(a, b) })
}

func TestPairConvergesAfterPartition(t *testing.T) {
	a, b, pa, pb := startPair(t)
	ctx := tctx(t)
	ca := dialT(t, a.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	cb := dialT(t, b.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	for i := range 20 {
		if _, err := ca.Put(ctx, fmt.Sprintf("cfg/both/%02d", i), []byte("v0")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 3*time.Second, "initial sync", func() bool { return sameRecords(a, b) })

	// Slow links first: replication still converges.
	pa.setDelay(20 * time.Millisecond)
	pb.setDelay(20 * time.Millisecond)
	if _, err := cb.Put(ctx, "cfg/slow", []byte("s")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "write over a slow link", func() bool { _, err := a.Get("cfg/slow"); return err == nil })
	pa.setDelay(0)
	pb.setDelay(0)

	pa.Cut()
	pb.Cut()
	eventually(t, 3*time.Second, "links down", func() bool { return !a.PeerConnected() && !b.PeerConnected() })
	// Both sides write during the cut: distinct keys, the same key, deletes.
	for i := range 30 {
		if _, err := ca.Put(ctx, fmt.Sprintf("cfg/a/%02d", i), []byte("a")); err != nil {
			t.Fatal(err)
		}
		if _, err := cb.Put(ctx, fmt.Sprintf("cfg/b/%02d", i), []byte("b")); err != nil {
			t.Fatal(err)
		}
	}
	va, err := ca.Put(ctx, "cfg/conflict", []byte("from-a"))
	if err != nil {
		t.Fatal(err)
	}
	vb, err := cb.Put(ctx, "cfg/conflict", []byte("from-b"))
	if err != nil {
		t.Fatal(err)
	}
	// Last writer wins by version, the same on both sides.
	winV, winVal := vb, "from-b"
	if vb.Less(va) {
		winV, winVal = va, "from-a"
	}
	if _, err := ca.Delete(ctx, "cfg/both/03"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Delete(ctx, "cfg/both/07"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // an anti-entropy round would run now if the link were up
	if _, err := b.Get("cfg/a/00"); err == nil {
		t.Fatal("a write crossed a cut link")
	}

	pa.Heal()
	pb.Heal()
	eventually(t, 5*time.Second, "convergence after heal", func() bool { return sameRecords(a, b) })
	for _, c := range []*Center{a, b} {
		if n := len(c.List("cfg/a/")) + len(c.List("cfg/b/")); n != 60 {
			t.Fatalf("%s holds %d of the 60 partition writes", c.ID(), n)
		}
		r, err := c.Get("cfg/conflict")
		if err != nil || r.Version != winV || string(r.Value) != winVal {
			t.Fatalf("%s conflict winner %+v %v, want %s at %+v", c.ID(), r, err, winVal, winV)
		}
		for _, k := range []string{"cfg/both/03", "cfg/both/07"} {
			if _, err := c.Get(k); err == nil {
				t.Fatalf("%s resurrected %s", c.ID(), k)
			}
		}
		if n := len(c.List("cfg/both/")); n != 18 {
			t.Fatalf("%s has %d of 18 surviving keys", c.ID(), n)
		}
	}
}

// TestDataDirInUse: a second center on a data directory another has open
// says so, and names the process holding it (this one: flock locks belong
// to the open file, so the second open in one process conflicts too).
func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	first, err := New(Options{DataDir: dir, Options: center.Options{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer first.backend.Close()
	_, err = New(Options{DataDir: dir, Options: center.Options{Insecure: true}})
	var inUse *DataDirInUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second center on %s: %v, want a DataDirInUseError", dir, err)
	}
	if inUse.Pid != os.Getpid() || inUse.Dir != dir || !strings.Contains(err.Error(), fmt.Sprintf("registry: data directory %s is in use by another center: pid %d (", dir, os.Getpid())) {
		t.Errorf("the message does not name this process (%d): %v", os.Getpid(), err)
	}
}

func TestFlockHolder(t *testing.T) {
	locks := []byte("1: POSIX  ADVISORY  WRITE 99 fe:00:42 0 EOF\n" +
		"2: FLOCK  ADVISORY  WRITE 24434 fe:00:9996774 0 EOF\n" +
		"2: -> FLOCK  ADVISORY  WRITE 555 fe:00:9996774 0 EOF\n" +
		"3: FLOCK  ADVISORY  WRITE 777 08:11:42 0 EOF\n")
	for _, tc := range []struct {
		major, minor uint32
		ino          uint64
		want         int
	}{
		{0xfe, 0, 9996774, 24434},
		{8, 0x11, 42, 777},
		{0xfe, 0, 42, 0}, // a POSIX lock, not bbolt's
		{0xfe, 1, 9996774, 0},
	} {
		if got := flockHolder(locks, tc.major, tc.minor, tc.ino); got != tc.want {
			t.Errorf("flockHolder(%x:%x:%d) = %d, want %d", tc.major, tc.minor, tc.ino, got, tc.want)
		}
	}
}

package shm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/shmreg/shmreg/skiplist"
)

// buildC compiles one of the C programs in examples/c with the flags CI
// uses. CI machines have gcc; a missing compiler fails the test rather than
// skipping it, so the C side can never silently go unchecked.
func buildC(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I../include",
		"-o", out, "../examples/c/"+name+".c")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, b)
	}
	return out
}

// TestLayoutMatchesC compares every size and offset the C header declares
// with the Go structs, so Go, C and docs/LAYOUT.md cannot drift apart.
func TestLayoutMatchesC(t *testing.T) {
	var (
		h  dataHeader
		c  ctlHeader
		s  readerSlot
		ix indexHeader
	)
	want := map[string]uint64{
		"header.size": uint64(unsafe.Sizeof(h)), "header.magic": uint64(unsafe.Offsetof(h.magic)),
		"header.version": uint64(unsafe.Offsetof(h.version)), "header.header_size": uint64(unsafe.Offsetof(h.headerSize)),
		"header.file_size": uint64(unsafe.Offsetof(h.fileSize)), "header.pool_start": uint64(unsafe.Offsetof(h.poolStart)),
		"header.created_ns": uint64(unsafe.Offsetof(h.createdNs)), "header.max_height": uint64(unsafe.Offsetof(h.maxHeight)),
		"header.head": uint64(unsafe.Offsetof(h.head)), "header.state": uint64(unsafe.Offsetof(h.state)),
		"header.generation": uint64(unsafe.Offsetof(h.generation)), "header.index": uint64(unsafe.Offsetof(h.index)),
		"header.alloc": uint64(unsafe.Offsetof(h.alloc)), "header.entries": uint64(unsafe.Offsetof(h.entries)),
		"header.live_bytes": uint64(unsafe.Offsetof(h.liveBytes)), "header.garbage_bytes": uint64(unsafe.Offsetof(h.garbageBytes)),
		"header.writer_pid": uint64(unsafe.Offsetof(h.writerPid)), "header.compactions": uint64(unsafe.Offsetof(h.compactions)),
		"header.place_revision": uint64(unsafe.Offsetof(h.placeRevision)), "header.value_alloc": uint64(unsafe.Offsetof(h.valueAlloc)),
		"header.place_center":  uint64(unsafe.Offsetof(h.placeCenter)),
		"header.retired_bytes": uint64(unsafe.Offsetof(h.retiredBytes)), "header.reusable_bytes": uint64(unsafe.Offsetof(h.reusableBytes)),
		"header.oldest_epoch": uint64(unsafe.Offsetof(h.oldestEpoch)), "header.free_by_class": uint64(unsafe.Offsetof(h.freeByClass)),
		"node.size": skiplist.NodeSize(0), "node.value": 0, "node.key": 8, "node.height": 16, "node.inline_size": 20, "node.next": 24,
		"index.size": uint64(unsafe.Sizeof(ix)), "index.capacity": uint64(unsafe.Offsetof(ix.capacity)),
		"index.used": uint64(unsafe.Offsetof(ix.used)), "index.tombstones": uint64(unsafe.Offsetof(ix.tombstones)),
		"index.slots": indexHeaderSize,
		"ctl.size":    uint64(unsafe.Sizeof(c)), "ctl.magic": uint64(unsafe.Offsetof(c.magic)),
		"ctl.version": uint64(unsafe.Offsetof(c.version)), "ctl.slot_count": uint64(unsafe.Offsetof(c.slotCount)),
		"ctl.file_size": uint64(unsafe.Offsetof(c.fileSize)), "ctl.created_ns": uint64(unsafe.Offsetof(c.createdNs)),
		"ctl.notify_seq": uint64(unsafe.Offsetof(c.notifySeq)), "ctl.notify_waiters": uint64(unsafe.Offsetof(c.notifyWaiters)),
		"ctl.slots_forced": uint64(unsafe.Offsetof(c.slotsForced)), "ctl.slots_reaped": uint64(unsafe.Offsetof(c.slotsReaped)),
		"slot.size": uint64(unsafe.Sizeof(s)), "slot.owner": uint64(unsafe.Offsetof(s.owner)),
		"slot.epoch": uint64(unsafe.Offsetof(s.epoch)), "slot.pid": uint64(unsafe.Offsetof(s.pid)),
		"const.layout_version": LayoutVersion, "const.ctl_version": ControlVersion, "const.header_size": headerSize, "const.max_height": skiplist.MaxHeight,
		"const.pair_offset_bits": 40, "const.state_superseded": stateSuperseded, "const.state_committing": stateCommitting,
		"const.index_empty": slotEmpty, "const.index_tombstone": slotTombstone, "const.ctl_lock_offset": ctlLockOff,
		"const.ctl_slots_offset": ctlSlotsOff, "const.epoch_forced": epochForced,
	}
	out, err := exec.Command(buildC(t, "shmreg_layout")).Output()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, val, _ := strings.Cut(sc.Text(), " ")
		got, err := strconv.ParseUint(val, 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("C declares %s = %d, which the Go side does not check", name, got)
			continue
		}
		if got != w {
			t.Errorf("%s: C says %d, Go says %d", name, got, w)
		}
		seen[name] = true
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("C does not print %s", name)
		}
	}
}

// TestCReadsGoRegion: a C program that knows only include/shmreg.h reads a
// region the Go writer made (grown, updated, with deletions) and must list
// exactly the entries the Go reader lists, find each by the index and by the
// skiplist, and compute the same hashes.
func TestCReadsGoRegion(t *testing.T) {
	dump := buildC(t, "shmreg_dump")
	opts := Options{Dir: t.TempDir(), Size: 64 << 10}
	w, r := openPair(t, opts)
	for i := 0; i < 3000; i++ {
		k := []byte(fmt.Sprintf("svc/s%02d/i%04d", i%17, i%900))
		if i%7 == 3 {
			if _, err := w.Delete(k); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := w.Put(k, []byte(fmt.Sprintf("value-%d-\x00\xff", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Put([]byte("cfg/empty"), nil); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	if err := r.Scan(nil, func(k, v []byte) bool {
		fmt.Fprintf(&want, "%s\t%s\n", k, hex.EncodeToString(v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	path := opts.Resolve("r")
	got, err := exec.Command(dump, path).Output()
	if err != nil {
		t.Fatalf("shmreg_dump: %v", err)
	}
	if string(got) != want.String() {
		t.Fatalf("C dump differs from the Go scan:\nC:  %.300q\nGo: %.300q", got, want.String())
	}
	if st := w.Stat(); st.Compactions == 0 {
		t.Fatal("region never grew: the test should cover a grown region")
	}
	one, err := exec.Command(dump, path, "--get", "cfg/empty").Output()
	if err != nil || string(one) != "\n" {
		t.Fatalf("--get of an empty value: %q, %v", one, err)
	}
	if err := exec.Command(dump, path, "--get", "svc/s03/i0003").Run(); err == nil {
		t.Fatal("--get of a deleted key succeeded")
	}
	keys := []string{"", "a", "svc/service-0042/instance-000042", "12345678", "123456789"}
	out, err := exec.Command(dump, append([]string{"--hash"}, keys...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if want := fmt.Sprintf("%016x\t%s", Hash([]byte(keys[i])), keys[i]); line != want {
			t.Errorf("C hash line %q, Go %q", line, want)
		}
	}
	_ = os.Remove(path)
}

package shm

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The C reader (include/shmreg.h) in real processes against the Go writer:
// it must take part in the reader-slot protocol of docs/LAYOUT.md, so that
// the writer never reuses memory a C read section can still reach, a dead C
// reader is reaped, and an idle one holds nothing back. The child is
// examples/c/shmreg_churn_reader.c.

// cReader is one shmreg_churn_reader process.
type cReader struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startCReader runs the C reader with args and waits for its first line,
// which must be want ("ready" or "read").
func startCReader(t *testing.T, bin, want string, args ...string) *cReader {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdin, out := startPiped(t, cmd, want)
	return &cReader{cmd, stdin, out}
}

// stop closes the reader's stdin and returns its read and eviction counts;
// a reader that saw a bad value exited 1 with a "bad ..." line instead.
func (c *cReader) stop(t *testing.T) (reads, evicted int) {
	t.Helper()
	c.stdin.Close()
	line, _ := c.out.ReadString('\n')
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("C reader failed (%v); it said %q", err, line)
	}
	if _, err := fmt.Sscanf(line, "reads %d evicted %d\n", &reads, &evicted); err != nil {
		t.Fatalf("C reader said %q", line)
	}
	return reads, evicted
}

// TestCReaderUnderChurn: two C reader processes (one publishing its epochs
// with relaxed stores under membarrier, one with seq_cst stores) read and
// check random soak values, by the index, the skiplist, iteration and
// get_copy, while the writer rewrites the region so that its memory is
// reused several times over (more value bytes written than the file holds,
// with no rebuild). Every value they read must be whole and their own key's.
// Without read sections the writer recycles values under the readers and
// they report torn values within the first second.
func TestCReaderUnderChurn(t *testing.T) {
	bin := buildC(t, "shmreg_churn_reader")
	const n = 2000
	// The churn settles at about 1.2 MB used, but a reader preempted
	// inside a section (2 cores, 3 busy processes) holds reuse back for as
	// many commits as it sleeps; the pool then grows from its bump cursors,
	// and once they meet, a size class with no free block forces a rebuild.
	// A roomy file keeps such spikes from rebuilding it.
	opts := Options{Dir: t.TempDir(), Size: n * 16384, ReadLease: time.Hour}
	w, err := OpenWriter("soak", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	version := 0
	var b Batch
	for i := 0; i < n; i++ {
		version++
		b.Put(soakKey(i), soakValue(soakKey(i), version))
	}
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	path := opts.Resolve("soak")
	readers := []*cReader{
		startCReader(t, bin, "ready", path, strconv.Itoa(n)),
		startCReader(t, bin, "ready", path, strconv.Itoa(n), "--seq-cst"),
	}
	if st := w.Stat(); st.ReadersLive != len(readers) {
		t.Fatalf("%d reader slots live, want one per C reader (%d)", st.ReadersLive, len(readers))
	}

	// Churn until the values written add up to twice the file. Without a
	// rebuild the bump cursors can hand out at most the file's bytes, so
	// at least written - file bytes came from reused blocks: the 1.2 MB
	// working set recycled some thirty times over.
	rng := rand.New(rand.NewPCG(5, 5))
	file := w.Stat().FileBytes
	var written, sawReusable uint64
	commits := 0
	for written < 2*file {
		b.Reset()
		for j := 0; j < 100; j++ {
			k := soakKey(rng.IntN(n))
			if rng.IntN(10) == 0 {
				b.Delete(k)
				continue
			}
			version++
			v := soakValue(k, version)
			written += uint64(len(v))
			b.Put(k, v)
		}
		if err := w.Commit(&b); err != nil {
			t.Fatal(err)
		}
		commits++
		if commits%50 == 0 {
			st := w.Stat()
			sawReusable = max(sawReusable, st.ReusableBytes)
		}
	}
	reads, evicted := 0, 0
	for _, r := range readers {
		rd, ev := r.stop(t)
		reads += rd
		evicted += ev
	}
	st := w.Stat()
	t.Logf("%d commits, %d value bytes written into a %d-byte file (at least %d B from reused blocks); %d checked C reads, %d evicted sections; most reusable at once %d B",
		commits, written, file, written-file, reads, evicted, sawReusable)
	if st.Compactions != 0 {
		t.Fatalf("the region was rebuilt %d times: the churn did not run on reused memory", st.Compactions)
	}
	if sawReusable == 0 {
		t.Fatal("no block ever reached the free lists")
	}
	if reads == 0 {
		t.Fatal("the C readers made no reads")
	}
	if evicted != 0 || st.SlotsForced != 0 {
		t.Fatalf("%d sections evicted, %d slots forced, with an hour's lease", evicted, st.SlotsForced)
	}
	if st.ReadersLive != 0 {
		t.Fatalf("%d reader slots still live after the C readers closed", st.ReadersLive)
	}
}

// TestCReaderKilledInSectionIsReaped: a C reader killed with SIGKILL inside
// a read section holds memory back while it lives (its epoch is published),
// and is reaped by the writer once it is dead (its OFD lock is gone).
func TestCReaderKilledInSectionIsReaped(t *testing.T) {
	bin := buildC(t, "shmreg_churn_reader")
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	churn(t, w, 500, 1)
	held := w.Stat().Generation
	c := startCReader(t, bin, "read", opts.Resolve("r"), "--hold", "k00001")
	before := w.Stat().ReusableBytes
	churn(t, w, 500, 4)
	st := w.Stat()
	if st.ReadersLive != 1 {
		t.Fatalf("%d reader slots live, want the C reader's", st.ReadersLive)
	}
	if st.ReusableBytes > before || st.OldestReaderEpoch > held || st.SlotsReaped != 0 {
		t.Fatalf("memory was reused under a live C section at generation %d: reusable before %d, now %+v", held, before, st)
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
	churnUntilReaped(t, w)
}

// TestCReaderIdleHoldsNothing: a C reader that read once and sits idle, its
// slot claimed, does not hold memory reuse back: its slot returned to 0 when
// its section ended.
func TestCReaderIdleHoldsNothing(t *testing.T) {
	bin := buildC(t, "shmreg_churn_reader")
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, ReadLease: time.Hour}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	churn(t, w, 500, 1)
	c := startCReader(t, bin, "read", opts.Resolve("r"), "--idle", "k00001")
	before := w.Stat()
	churn(t, w, 500, 4)
	st := w.Stat()
	if st.ReadersLive != 1 {
		t.Fatalf("%d reader slots live, want the idle C reader's", st.ReadersLive)
	}
	if st.OldestReaderEpoch <= before.Generation {
		t.Fatalf("an idle C reader held reuse back: oldest epoch %d, generation before the churn %d", st.OldestReaderEpoch, before.Generation)
	}
	if st.SlotsForced != 0 || st.SlotsReaped != 0 {
		t.Fatalf("reuse needed forcing or reaping: %+v", st)
	}
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("idle C reader: %v", err)
	}
	if st := w.Stat(); st.ReadersLive != 0 {
		t.Fatalf("%d reader slots live after the C reader closed", st.ReadersLive)
	}
}

// TestCReadmeExampleCompiles: the C snippet of examples/c/README.md builds
// against include/shmreg.h with the flags CI uses, so the documented use of
// slots and sections cannot drift from the header.
func TestCReadmeExampleCompiles(t *testing.T) {
	readme, err := os.ReadFile("../examples/c/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(readme, []byte("\n```c\n"))
	snippet, _, ok2 := bytes.Cut(rest, []byte("\n```\n"))
	if !ok || !ok2 || !bytes.Contains(snippet, []byte("shmreg_read_begin")) {
		t.Fatalf("no C snippet using read sections in examples/c/README.md")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "readme.c")
	prog := "#include <stdio.h>\n#include \"shmreg.h\"\n\nint main(void)\n{\n" + string(snippet) + "\n    return 0;\n}\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-I../include", "-o", filepath.Join(dir, "readme"), src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's C example does not build: %v\n%s\n%s", err, out, prog)
	}
}

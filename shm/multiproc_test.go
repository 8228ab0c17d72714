package shm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cross-process tests: the race detector cannot see shared memory between
// processes, so these spawn the test binary itself as real child processes
// (selected by SHMREG_CHILD) and check invariants across them.

const childEnv = "SHMREG_CHILD"

func runTests(m *testing.M) int {
	if role := os.Getenv(childEnv); role != "" {
		if err := runChild(role, os.Getenv("SHMREG_CHILD_DIR"), os.Getenv("SHMREG_CHILD_ARG")); err != nil {
			fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
			return 3
		}
		return 0
	}
	return m.Run()
}

func runChild(role, dir, arg string) error {
	opts := Options{Dir: dir, Size: 256 << 10}
	switch role {
	case "reader":
		limit := time.Minute
		if arg != "" {
			limit, _ = time.ParseDuration(arg)
		}
		return childReader(opts, limit)
	case "writer":
		seed, _ := strconv.ParseUint(arg, 10, 64)
		return childWriter(opts, seed)
	case "waiter":
		return childWaiter(opts)
	case "idle-reader":
		// Reads once (publishing an epoch), says so, and waits to be killed.
		r, err := Open("r", opts)
		if err != nil {
			return err
		}
		if _, err := r.Get([]byte("k00001")); err != nil {
			return err
		}
		fmt.Println("read")
		time.Sleep(time.Minute)
		return nil
	case "nospace":
		return childNoSpace(dir)
	case "soak-reader":
		n, _ := strconv.Atoi(arg)
		return childSoakReader(opts, n)
	case "stuck-reader":
		// Enters a read that never ends (so its slot holds an epoch), says
		// so, and waits to be killed.
		r, err := Open("r", opts)
		if err != nil {
			return err
		}
		return r.View([]byte("k00001"), func([]byte) error {
			fmt.Println("read")
			time.Sleep(time.Minute)
			return nil
		})
	}
	return fmt.Errorf("unknown role %q", role)
}

// spawn starts the test binary as a child in the given role.
func spawn(t testing.TB, role, dir, arg string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "SHMREG_CHILD_DIR="+dir, "SHMREG_CHILD_ARG="+arg)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// versionedValue is what the writers in these tests store: the key, then a
// version, then padding whose length depends on the version, so that a torn
// or misplaced value cannot pass the check.
func versionedValue(key []byte, version int) []byte {
	v := fmt.Sprintf("%s#%d#", key, version)
	return []byte(v + strings.Repeat("x", version%97))
}

func checkValue(key, v []byte) error {
	rest, ok := bytes.CutPrefix(v, append(append([]byte(nil), key...), '#'))
	if !ok {
		return fmt.Errorf("value %q does not belong to key %q", v, key)
	}
	num, pad, ok := bytes.Cut(rest, []byte("#"))
	n, err := strconv.Atoi(string(num))
	if !ok || err != nil || len(pad) != n%97 || bytes.Count(pad, []byte("x")) != len(pad) {
		return fmt.Errorf("value %q of key %q is torn", v, key)
	}
	return nil
}

// childReader reads until the region holds the key "stop", checking every
// value and every scan, and fails if limit passes first.
func childReader(opts Options, limit time.Duration) error {
	var r *Reader
	var err error
	for i := 0; i < 200; i++ {
		if r, err = Open("r", opts); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	// Half the point reads go through a Session held for the whole run,
	// across the region's growth into new files.
	s, err := r.Session()
	if err != nil {
		return err
	}
	defer s.Close()
	reads := 0
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := r.Get([]byte("stop")); err == nil {
			fmt.Printf("reads %d\n", reads)
			return nil
		}
		var prev []byte
		err := r.Scan([]byte("k"), func(k, v []byte) bool {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				err = fmt.Errorf("scan out of order: %q then %q", prev, k)
				return false
			}
			prev = append(prev[:0], k...)
			if cerr := checkValue(k, v); cerr != nil {
				err = cerr
				return false
			}
			reads++
			return true
		})
		if err != nil {
			return err
		}
		for i := 0; i < 200; i++ {
			k := []byte(fmt.Sprintf("k%04d", rand.IntN(500)))
			view := r.View
			if i%2 == 1 {
				view = s.View
			}
			err := view(k, func(v []byte) error { return checkValue(k, v) })
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			reads++
		}
	}
	return errors.New("never saw the stop key")
}

// TestReadersInOtherProcesses runs reader processes that check every value
// they see while this process writes, deletes and grows the region.
func TestReadersInOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Size: 256 << 10}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	type child struct {
		cmd *exec.Cmd
		out io.ReadCloser
	}
	var kids []child
	for i := 0; i < 2; i++ {
		cmd, out := spawn(t, "reader", dir, "")
		kids = append(kids, child{cmd, out})
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 20000; i++ {
		k := []byte(fmt.Sprintf("k%04d", rng.IntN(500)))
		if rng.IntN(5) == 0 {
			if _, err := w.Delete(k); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := w.Put(k, versionedValue(k, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Then insert well past the file's size: the region grows into larger
	// files while the readers keep checking (their scans cover these keys).
	for i := 500; i < 4000; i++ {
		k := []byte(fmt.Sprintf("k%04d", i))
		if err := w.Put(k, versionedValue(k, i*97+96)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Put([]byte("stop"), nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range kids {
		line, _ := bufio.NewReader(c.out).ReadString('\n')
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("reader process failed: %v", err)
		}
		var n int
		if _, err := fmt.Sscanf(line, "reads %d", &n); err != nil || n == 0 {
			t.Fatalf("reader process reported %q", line)
		}
		t.Logf("reader process checked %d values", n)
	}
	if st := w.Stat(); st.Compactions == 0 || st.FileBytes < 2*uint64(opts.Size) {
		t.Fatalf("the region never grew past twice its first size, so the test did not cover readers following it: %+v", st)
	}
}

// childWriter commits random batches forever, announcing each on stdout
// before ("intent") and after ("done") the commit, until it is killed.
func childWriter(opts Options, seed uint64) error {
	w, err := OpenWriter("r", opts)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(seed, seed))
	for v := 1; ; v++ {
		if rng.IntN(64) == 0 {
			// A rebuild into a new file, killed or not half way.
			if err := w.Compact(); err != nil {
				return err
			}
		}
		// Mostly small batches over 300 hot keys; now and then a large one
		// over a wider key space, which grows the index and the region.
		keys, changes := 300, 1+rng.IntN(8)
		if rng.IntN(16) == 0 {
			keys, changes = 3000, 40
		}
		var b Batch
		var intent strings.Builder
		intent.WriteString("intent")
		for i := 0; i < changes; i++ {
			k := []byte(fmt.Sprintf("k%04d", rng.IntN(keys)))
			if rng.IntN(4) == 0 {
				b.Delete(k)
				fmt.Fprintf(&intent, " %s=-", k)
			} else {
				b.Put(k, versionedValue(k, v*10+i))
				fmt.Fprintf(&intent, " %s=%d", k, v*10+i)
			}
		}
		fmt.Fprintln(out, intent.String())
		out.Flush()
		if err := w.Commit(&b); err != nil {
			return err
		}
		fmt.Fprintln(out, "done")
		out.Flush()
	}
}

// TestWriterKilledAtRandom kills a writer process with SIGKILL at random
// moments; after each kill a reader must still read only whole values, and
// the next writer must repair the region so that Fsck is clean and every
// committed change is there.
func TestWriterKilledAtRandom(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 20
	}
	if s := os.Getenv("SHMREG_TORTURE"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	dir := t.TempDir()
	opts := Options{Dir: dir, Size: 256 << 10}
	want := map[string]string{} // key -> version, "-" for deleted
	// A reader process reads and checks every value through all the kills
	// and repairs, following the region into each new file.
	w0, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	w0.Close()
	reader, readerOut := spawn(t, "reader", dir, "10h")
	defer reader.Process.Kill()
	for it := 0; it < iterations; it++ {
		cmd, out := spawn(t, "writer", dir, strconv.Itoa(it+1))
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		time.Sleep(time.Duration(5+rand.IntN(40)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		var pending []string
		for l := range lines {
			switch {
			case strings.HasPrefix(l, "intent"):
				pending = strings.Fields(l)[1:]
			case l == "done":
				for _, kv := range pending {
					k, v, _ := strings.Cut(kv, "=")
					want[k] = v
				}
				pending = nil
			}
		}
		cmd.Wait()
		// A reader before repair: whatever it sees must be whole.
		if r, err := Open("r", opts); err == nil {
			err := r.Scan(nil, func(k, v []byte) bool { return checkValue(k, v) == nil })
			r.Close()
			if err != nil {
				t.Fatalf("iteration %d: reader of the crashed region: %v", it, err)
			}
		}
		w, err := OpenWriter("r", opts)
		if err != nil {
			t.Fatalf("iteration %d: reopen after kill: %v", it, err)
		}
		rep, err := Fsck("r", opts)
		if err != nil || len(rep.Problems) != 0 {
			t.Fatalf("iteration %d: Fsck after repair: %v %q", it, err, rep.Problems)
		}
		r, err := Open("r", opts)
		if err != nil {
			t.Fatal(err)
		}
		// The interrupted batch may have been applied in part (a batch is
		// not atomic across a writer crash): any value it gave a key is fine.
		pend := map[string][]string{}
		for _, kv := range pending {
			k, v, _ := strings.Cut(kv, "=")
			pend[k] = append(pend[k], v)
		}
		for k, v := range want {
			got, err := r.Get([]byte(k))
			if slices.ContainsFunc(pend[k], func(p string) bool { return matches(got, err, p) }) {
				continue // the interrupted commit reached this key
			}
			if !matches(got, err, v) {
				t.Fatalf("iteration %d: key %s = %q (%v), committed %s", it, k, got, err, v)
			}
		}
		// The interrupted commit may have landed: adopt what is there.
		for k := range pend {
			if got, err := r.Get([]byte(k)); err == nil {
				want[k] = strings.Split(string(got), "#")[1]
			} else {
				want[k] = "-"
			}
		}
		r.Close()
		if it == iterations-1 {
			if err := w.Put([]byte("stop"), nil); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
	}
	// A reader left on a file nobody marked superseded would never see the
	// stop key: give it a bounded time, then kill it and fail.
	stuck := time.AfterFunc(time.Minute, func() { reader.Process.Kill() })
	defer stuck.Stop()
	said, _ := io.ReadAll(readerOut)
	if err := reader.Wait(); err != nil || !strings.HasPrefix(string(said), "reads ") {
		t.Fatalf("the reader process running through the kills failed: %v; it said %q", err, said)
	}
	t.Logf("%d writer kills; the reader process running throughout: %s", iterations, strings.TrimSpace(string(said)))
}

func matches(got []byte, err error, version string) bool {
	if version == "-" {
		return errors.Is(err, ErrNotFound)
	}
	n, _ := strconv.Atoi(version)
	return err == nil && bytes.Equal(got, versionedValue(got[:bytes.IndexByte(got, '#')], n))
}

// childWaiter waits for one change and prints how long after the writer's
// timestamp (the value of key "t") it woke.
func childWaiter(opts Options) error {
	r, err := Open("r", opts)
	if err != nil {
		return err
	}
	defer r.Close()
	seq := r.Seq()
	fmt.Println("ready")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Wait(ctx, seq); err != nil {
		return err
	}
	woke := time.Now().UnixNano()
	v, err := r.Get([]byte("t"))
	if err != nil {
		return err
	}
	sent, _ := strconv.ParseInt(string(v), 10, 64)
	fmt.Printf("latency %d\n", woke-sent)
	return nil
}

// TestWakeAcrossProcesses: a process waiting on the region's futex wakes
// when this process commits. The latency is logged; BenchmarkWake reports it.
func TestWakeAcrossProcesses(t *testing.T) {
	lat := wakeOnce(t)
	t.Logf("cross-process wake-up after %v", lat)
}

func wakeOnce(t testing.TB) time.Duration {
	dir := t.TempDir()
	opts := Options{Dir: dir}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd, out := spawn(t, "waiter", dir, "")
	br := bufio.NewReader(out)
	if l, _ := br.ReadString('\n'); l != "ready\n" {
		t.Fatalf("waiter said %q", l)
	}
	time.Sleep(20 * time.Millisecond) // let it reach FUTEX_WAIT
	if err := w.Put([]byte("t"), []byte(strconv.FormatInt(time.Now().UnixNano(), 10))); err != nil {
		t.Fatal(err)
	}
	line, _ := br.ReadString('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("waiter failed: %v", err)
	}
	var ns int64
	if _, err := fmt.Sscanf(line, "latency %d", &ns); err != nil {
		t.Fatalf("waiter said %q", line)
	}
	return time.Duration(ns)
}

func BenchmarkWake(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += wakeOnce(b)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "µs/wake")
}

package lock

// Tests across real processes: the test binary re-runs itself as the child
// (TestHelperProcess), in a role named by an environment variable. Children
// map the same temp file MAP_SHARED, as the region's processes map the
// control file.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

const (
	envRole    = "SHMREG_LOCK_HELPER"
	envFile    = "SHMREG_LOCK_FILE"
	envTimeout = "SHMREG_LOCK_TIMEOUT"
	envIters   = "SHMREG_LOCK_ITERS"

	// The test file is the lock followed by one page of data that the
	// children protect with it.
	fileSize = Size + 4096
)

// guarded is the data page the load tests protect with the lock.
type guarded struct {
	inside uint32 // 1 while a writer is in its critical section
	stop   uint32 // set by the parent to stop endless children
	a, b   uint64 // equal outside a writer's critical section
	reads  uint64 // read critical sections completed, all children
	start  uint32 // set by the parent once every child runs
}

func guardedOf(mem []byte) *guarded { return (*guarded)(unsafe.Pointer(&mem[Size])) }

// child is a running helper process.
type child struct {
	role  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
}

// spawn starts the test binary as a helper in role on the lock file at path.
func spawn(t *testing.T, role, path string, timeout time.Duration, iters int) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		envRole+"="+role, envFile+"="+path,
		envTimeout+"="+timeout.String(), envIters+"="+strconv.Itoa(iters))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return &child{role: role, cmd: cmd, in: in, lines: bufio.NewScanner(out)}
}

// expect reads the child's next line of output and checks it.
func (c *child) expect(t *testing.T, want string) {
	t.Helper()
	if !c.lines.Scan() {
		t.Fatalf("child ended before saying %q: %v", want, c.lines.Err())
	}
	if got := c.lines.Text(); got != want {
		t.Fatalf("child said %q, want %q", got, want)
	}
}

// TestHelperProcess is the child's entry point; it does nothing in a normal
// test run.
func TestHelperProcess(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("helper process only")
	}
	os.Exit(helper(role))
}

// helper runs one role and returns the exit status: 0 success, 1 an
// invariant was violated, 2 an operation failed.
func helper(role string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s (pid %d): %v\n", role, os.Getpid(), err)
		return 2
	}
	timeout, err := time.ParseDuration(os.Getenv(envTimeout))
	if err != nil {
		return fail(err)
	}
	iters, _ := strconv.Atoi(os.Getenv(envIters))
	f, err := os.OpenFile(os.Getenv(envFile), os.O_RDWR, 0)
	if err != nil {
		return fail(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, fileSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	rw, err := New(mem[:Size], Options{Timeout: timeout})
	if err != nil {
		return fail(err)
	}
	d := guardedOf(mem)
	violations := 0
	// Start together, so that the children really contend.
	for atomic.LoadUint32(&d.start) == 0 {
		time.Sleep(time.Millisecond)
	}

	switch role {
	case "hold-write", "hold-read":
		// Take the lock, say so, then hold it until told to release (or
		// until killed), and report what the release said.
		acquire, release := rw.Lock, rw.Unlock
		if role == "hold-read" {
			acquire, release = rw.RLock, rw.RUnlock
		}
		g, err := acquire()
		if err != nil {
			return fail(err)
		}
		fmt.Println("held")
		bufio.NewScanner(os.Stdin).Scan()
		if err := release(g); err != nil {
			fmt.Println("release:", err)
		} else {
			fmt.Println("release: ok")
		}
	case "writer-loop":
		for range iters {
			g, err := rw.Lock()
			if err != nil {
				return fail(err)
			}
			if g.Forced != 0 || g.Recovered != 0 {
				violations++
			}
			if atomic.SwapUint32(&d.inside, 1) != 0 {
				violations++
			}
			a := atomic.LoadUint64(&d.a)
			if a%16 == 0 {
				runtime.Gosched() // widen the window for an intruder
			}
			atomic.StoreUint64(&d.a, a+1)
			if atomic.LoadUint64(&d.b) != a {
				violations++
			}
			atomic.StoreUint64(&d.b, a+1)
			atomic.StoreUint32(&d.inside, 0)
			if err := rw.Unlock(g); err != nil {
				return fail(err)
			}
		}
	case "reader-loop", "reader-churn":
		// reader-loop reads iters times; reader-churn holds each read for
		// a while and goes on until the parent sets stop.
		for n := 0; role == "reader-churn" || n < iters; n++ {
			if role == "reader-churn" && atomic.LoadUint32(&d.stop) != 0 {
				break
			}
			g, err := rw.RLock()
			if err != nil {
				return fail(err)
			}
			if g.Forced != 0 || g.Recovered != 0 {
				violations++
			}
			if atomic.LoadUint32(&d.inside) != 0 || atomic.LoadUint64(&d.a) != atomic.LoadUint64(&d.b) {
				violations++
			}
			if role == "reader-churn" {
				time.Sleep(3 * time.Millisecond)
			}
			atomic.AddUint64(&d.reads, 1)
			if err := rw.RUnlock(g); err != nil {
				return fail(err)
			}
		}
	default:
		return fail(errors.New("unknown role"))
	}
	if violations != 0 {
		fmt.Fprintf(os.Stderr, "helper %s (pid %d): %d violations\n", role, os.Getpid(), violations)
		return 1
	}
	return 0
}

func newProcessLock(t *testing.T) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl")
	mem := mapFile(t, path, fileSize)
	if err := Init(mem[:Size]); err != nil {
		t.Fatal(err)
	}
	atomic.StoreUint32(&guardedOf(mem).start, 1)
	return path, mem
}

// TestProcessKilledHolderRecovered: a child holding one side is killed with
// SIGKILL inside its critical section; another process gets the lock well
// before the timeout, and the recovery is counted.
func TestProcessKilledHolderRecovered(t *testing.T) {
	const timeout = 5 * time.Second
	for _, c := range []struct {
		hold string
		take func(*RW) (Grant, error)
		name string
	}{
		{"hold-write", (*RW).Lock, "killed writer, Lock"},
		{"hold-write", (*RW).RLock, "killed writer, RLock"},
		{"hold-read", (*RW).Lock, "killed reader, Lock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, mem := newProcessLock(t)
			rw := mustNew(t, mem[:Size], Options{Timeout: timeout})
			ch := spawn(t, c.hold, path, timeout, 0)
			ch.expect(t, "held")
			if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// The child is not reaped yet: the lock must see through the
			// zombie.
			start := time.Now()
			g, err := c.take(rw)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if took > 2*time.Second {
				t.Errorf("recovery took %v, want well under the %v timeout", took, timeout)
			}
			if g.Recovered != 1 || g.Forced != 0 {
				t.Errorf("grant %+v, want Recovered 1, Forced 0", g)
			}
			if st := rw.Stats(); st.Recovered != 1 || st.Forced != 0 {
				t.Errorf("Stats %+v, want Recovered 1, Forced 0", st)
			}
			t.Logf("recovered in %v", took)
		})
	}
}

// TestProcessLiveHolderForced: a child that holds one side and never lets
// go is forced out after the timeout, the forced count goes up, and the
// child's late release reports ErrLockLost.
func TestProcessLiveHolderForced(t *testing.T) {
	const timeout = 200 * time.Millisecond
	for _, c := range []struct {
		hold string
		take func(*RW) (Grant, error)
		name string
	}{
		{"hold-write", (*RW).Lock, "live writer, Lock"},
		{"hold-write", (*RW).RLock, "live writer, RLock"},
		{"hold-read", (*RW).Lock, "live reader, Lock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, mem := newProcessLock(t)
			rw := mustNew(t, mem[:Size], Options{Timeout: timeout})
			ch := spawn(t, c.hold, path, time.Minute, 0)
			ch.expect(t, "held")
			start := time.Now()
			g, err := c.take(rw)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if took < timeout || took > 5*time.Second {
				t.Errorf("forced after %v, want between %v and 5s", took, timeout)
			}
			if g.Forced != 1 || g.Recovered != 0 {
				t.Errorf("grant %+v, want Forced 1", g)
			}
			if st := rw.Stats(); st.Forced != 1 {
				t.Errorf("Stats.Forced = %d, want 1", st.Forced)
			}
			if _, err := io.WriteString(ch.in, "release\n"); err != nil {
				t.Fatal(err)
			}
			ch.expect(t, "release: "+ErrLockLost.Error())
			if err := ch.cmd.Wait(); err != nil {
				t.Fatalf("child: %v", err)
			}
		})
	}
}

// TestProcessMutualExclusion: writer and reader children hammer the lock;
// each checks the invariant of the data page under the lock and reports
// violations through its exit status.
func TestProcessMutualExclusion(t *testing.T) {
	const writers, readers, iters = 3, 2, 20000
	path, mem := newProcessLock(t)
	atomic.StoreUint32(&guardedOf(mem).start, 0)
	var children []*child
	for range writers {
		children = append(children, spawn(t, "writer-loop", path, time.Minute, iters))
	}
	for range readers {
		children = append(children, spawn(t, "reader-loop", path, time.Minute, iters))
	}
	atomic.StoreUint32(&guardedOf(mem).start, 1)
	start := time.Now()
	for i, ch := range children {
		if err := ch.cmd.Wait(); err != nil {
			t.Errorf("child %d (%s): %v", i, ch.role, err)
		}
	}
	t.Logf("%d writes and %d reads by %d processes in %v", writers*iters, readers*iters, writers+readers, time.Since(start))
	d := guardedOf(mem)
	if got := atomic.LoadUint64(&d.a); got != writers*iters {
		t.Errorf("a = %d, want %d (lost updates)", got, writers*iters)
	}
	if a, b := atomic.LoadUint64(&d.a), atomic.LoadUint64(&d.b); a != b {
		t.Errorf("a = %d, b = %d after the run", a, b)
	}
	if got := atomic.LoadUint64(&d.reads); got != readers*iters {
		t.Errorf("reads = %d, want %d", got, readers*iters)
	}
	rw := mustNew(t, mem[:Size], Options{})
	if st := rw.Stats(); st != (Stats{}) {
		t.Errorf("Stats after the run = %+v, want zero", st)
	}
}

// TestProcessWriterNotStarved: reader children keep the read side held
// without a gap; a writer still gets in long before its timeout, without
// forcing anyone.
func TestProcessWriterNotStarved(t *testing.T) {
	const timeout = 10 * time.Second
	path, mem := newProcessLock(t)
	d := guardedOf(mem)
	var children []*child
	for range 3 {
		children = append(children, spawn(t, "reader-churn", path, time.Minute, 0))
	}
	waitFor(t, func() bool { return atomic.LoadUint64(&d.reads) >= 30 }, "readers never got going")
	rw := mustNew(t, mem[:Size], Options{Timeout: timeout})
	for range 5 {
		before := atomic.LoadUint64(&d.reads)
		start := time.Now()
		g, err := rw.Lock()
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if g.Forced != 0 {
			t.Fatalf("writer had to force its way in after %v: starved", took)
		}
		if took > 5*time.Second {
			t.Errorf("writer waited %v behind readers", took)
		}
		if err := rw.Unlock(g); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return atomic.LoadUint64(&d.reads) >= before+10 }, "readers stalled after the writer")
		t.Logf("writer got in after %v", took)
	}
	atomic.StoreUint32(&d.stop, 1)
	for _, ch := range children {
		if err := ch.cmd.Wait(); err != nil {
			t.Errorf("reader child: %v", err)
		}
	}
	if st := rw.Stats(); st.Forced != 0 || st.Recovered != 0 {
		t.Errorf("Stats %+v, want nothing forced or recovered", st)
	}
}

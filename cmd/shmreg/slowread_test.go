package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmreg/shmreg/shm"
)

// TestReadsOutliveASlowConsumer: a region command whose output is not
// drained for several read leases (`shmreg ls | less`, a stalled pipe)
// still succeeds and prints everything. The writer rewrites other keys all
// along, so a reader slot held while the command waits on the pipe would
// be forced free after the lease and the command would fail with "read
// outlived its lease" (as it did when ls printed from inside the scan).
func TestReadsOutliveASlowConsumer(t *testing.T) {
	// The writer's lease decides when a stuck slot is forced; the commands
	// keep the default (2s) for their own reads, which last microseconds.
	const lease = 250 * time.Millisecond
	const entries = 1000
	var listing strings.Builder
	for i := range entries {
		fmt.Fprintf(&listing, "k/%05d\tvalue-%05d-%s\n", i, i, strings.Repeat("v", 40))
	}
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: one value far larger than the pipe
	for _, tc := range []struct {
		name string
		args []string // after --region
		want string
	}{
		{"ls", []string{"k/"}, listing.String()},
		{"get", []string{"big"}, big + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w, err := shm.OpenWriter("r", shm.Options{Dir: dir, Size: 4 << 20, ReadLease: lease})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			var b shm.Batch
			for i := range entries {
				b.Put(fmt.Appendf(nil, "k/%05d", i), fmt.Appendf(nil, "value-%05d-%s", i, strings.Repeat("v", 40)))
			}
			b.Put([]byte("big"), []byte(big))
			if err := w.Commit(&b); err != nil {
				t.Fatal(err)
			}

			out := stalledRun(t, append([]string{tc.name, "--region", filepath.Join(dir, "r")}, tc.args...), func() {
				churnFor(t, w, 4*lease)
			})
			if out != tc.want {
				t.Errorf("%s printed %d bytes, want %d (first difference near byte %d)", tc.name, len(out), len(tc.want), firstDiff(out, tc.want))
			}
			if st := w.Stat(); st.SlotsForced != 0 {
				t.Errorf("the command held a reader slot past the lease: %d forced", st.SlotsForced)
			}
		})
	}
}

// stalledRun runs the built shmreg with args, its standard output a pipe
// that the test leaves full (the command is blocked writing to it) while
// stall runs, then drains. It fails the test unless the command exits 0,
// and returns what it printed.
func stalledRun(t *testing.T, args []string, stall func()) string {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	// The smallest pipe the kernel allows (a page), so little output fills it.
	capacity, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shmregBinary(t), args...)
	cmd.Stdout = pw // the pipe itself, not a copying goroutine: nothing reads it but the drain below
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
	}()

	// A full pipe means the command is blocked in a write.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ) // FIONREAD: bytes waiting in the pipe
		if err != nil {
			t.Fatal(err)
		}
		if n >= capacity {
			break
		}
		select {
		case err := <-done:
			exited = true
			t.Fatalf("%q exited (%v) before filling the pipe\n%s", args, err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never filled the pipe (%d of %d bytes)", args, n, capacity)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stall()

	got, err := io.ReadAll(pr)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("%q: %v\n%s", args, err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q did not exit within 10s of its output being drained", args)
	}
	return string(got)
}

// churnFor rewrites keys outside what the commands read, 200 KiB a commit,
// for at least d: enough retired memory for the writer to run a
// reclamation pass (and force any slot stuck past its lease) every commit
// or two.
func churnFor(t *testing.T, w *shm.Writer, d time.Duration) {
	t.Helper()
	value := bytes.Repeat([]byte{'c'}, 1024)
	for start, round := time.Now(), 0; time.Since(start) < d; round++ {
		var b shm.Batch
		for i := range 200 {
			value[0] = byte(round)
			b.Put(fmt.Appendf(nil, "churn/%03d", i), value)
		}
		if err := w.Commit(&b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

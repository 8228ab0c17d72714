package shm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFullFileSystem runs a writer against a 1 MiB tmpfs (a full /dev/shm,
// in small): a region that does not fit is refused with ErrNoSpace, and a
// region that can no longer grow refuses the write that needs the room with
// ErrNoSpace while everything committed before stays readable, Fsck stays
// clean, and smaller writes go on working.
//
// The tmpfs is mounted by a child process in a user and mount namespace of
// its own, so the test needs no privileges and leaves no mount behind.
func TestFullFileSystem(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=nospace", "SHMREG_CHILD_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && errors.Is(err, syscall.EPERM) {
		t.Skipf("this machine does not allow user namespaces, so no private tmpfs can be mounted: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "nospace ok") {
		t.Fatalf("child on a full tmpfs: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

func childNoSpace(dir string) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		return fmt.Errorf("mount a 1 MiB tmpfs: %w", err)
	}
	defer unix.Unmount(dir, 0)

	// A region larger than the file system is refused up front.
	if _, err := OpenWriter("big", Options{Dir: dir, Size: 4 << 20}); !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("a 4 MiB region on a 1 MiB tmpfs: got %v, want ErrNoSpace", err)
	}

	opts := Options{Dir: dir, Size: 256 << 10}
	w, err := OpenWriter("r", opts)
	if err != nil {
		return err
	}
	defer w.Close()
	r, err := Open("r", opts)
	if err != nil {
		return err
	}
	defer r.Close()
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1000) }
	committed := 0
	for ; committed < 5000; committed++ {
		err = w.Put([]byte(fmt.Sprintf("k%05d", committed)), value(committed))
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("filling the region until the file system is full: got %v after %d puts, want ErrNoSpace", err, committed)
	}
	for i := 0; i < committed; i++ {
		v, err := r.Get([]byte(fmt.Sprintf("k%05d", i)))
		if err != nil || !bytes.Equal(v, value(i)) {
			return fmt.Errorf("k%05d after the failed growth: %.10q %v", i, v, err)
		}
	}
	if rep, err := Fsck("r", opts); err != nil || len(rep.Problems) != 0 {
		return fmt.Errorf("fsck after the failed growth: %v %q", err, rep.Problems)
	}
	// Writes that fit still work: shrink a value in place of a big one.
	if err := w.Put([]byte("k00000"), []byte("small")); err != nil {
		return fmt.Errorf("a small update after the failed growth: %w", err)
	}
	if v, err := r.Get([]byte("k00000")); err != nil || string(v) != "small" {
		return fmt.Errorf("the small update: %q %v", v, err)
	}
	// The failed rebuild left no half-built file behind.
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(left) != 0 {
		return fmt.Errorf("rebuild files left behind: %v", left)
	}
	st := w.Stat()
	fmt.Printf("nospace ok: %d entries committed before the file system filled (file %d bytes, %d compactions), all readable\n",
		committed, st.FileBytes, st.Compactions)
	return nil
}

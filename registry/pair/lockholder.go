package pair

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The store's bbolt file is locked (flock, exclusive) by the center that
// has it open, so a second center on the same data directory waits for the
// lock and then gives up. To say who holds it, lockHolder asks the kernel:
// /proc/locks lists every lock with the pid that took it and the device and
// inode of the file. That is the truth at the moment of asking, for any
// holder (a center, or a bbolt tool), with nothing to keep up to date; a pid
// file written by the center could be stale or belong to the previous
// holder. Where /proc/locks cannot be read (not Linux, or a restricted
// /proc), the message goes without the pid.

// lockHolder returns the pid holding a flock on the file at path and its
// command line, or 0 if it cannot be told. A holder in another pid
// namespace is listed with pid 0 or -1 (and then not named).
func lockHolder(path string) (pid int, cmdline string) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, ""
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0, ""
	}
	pid = flockHolder(locks, uint32(unix.Major(st.Dev)), uint32(unix.Minor(st.Dev)), st.Ino)
	if pid <= 0 {
		return 0, ""
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return pid, strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// flockHolder finds, in the text of /proc/locks, the pid of the FLOCK on
// the file with the given device and inode. A line reads
//
//	1: FLOCK  ADVISORY  WRITE 24434 fe:00:9996774 0 EOF
//
// (the device's major and minor in hex, the inode in decimal); a waiting
// lock is marked "->" after the number and is skipped.
func flockHolder(locks []byte, major, minor uint32, ino uint64) int {
	want := fmt.Sprintf("%02x:%02x:%d", major, minor, ino)
	sc := bufio.NewScanner(bytes.NewReader(locks))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != want {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil {
			return pid
		}
	}
	return 0
}

package lock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Holder identifies a process across pid reuse: its pid and its start time
// (field 22 of /proc/<pid>/stat, in clock ticks since boot). A pid that has
// been recycled belongs to a process with another start time. All processes
// sharing a lock must share one pid namespace.
type Holder struct {
	Pid   int
	Start uint64
}

// Self returns the identity of the calling process.
func Self() (Holder, error) {
	pid := os.Getpid()
	start, _, err := procStat(pid)
	if err != nil {
		return Holder{}, fmt.Errorf("lock: own start time: %w", err)
	}
	return Holder{Pid: pid, Start: start}, nil
}

// Alive reports whether the process h names still runs: its pid exists, is
// not a zombie, and has h's start time. When the start time cannot be read
// (for instance /proc mounted with hidepid) but the pid exists, Alive says
// true: a lock must never be recovered from a holder that may be alive.
func Alive(h Holder) bool {
	return alive(h.Pid, func(start uint64) bool { return start == h.Start })
}

// alive is Alive with a caller-supplied start-time comparison (holder words
// keep only the low bits of the start time).
func alive(pid int, sameStart func(uint64) bool) bool {
	if pid <= 0 {
		return false
	}
	// kill(pid, 0) is answered even where /proc hides other users' pids.
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	start, state, err := procStat(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// The pid may have exited between kill and open, or /proc
			// hides it from us. Ask kill again to tell the two apart.
			return !errors.Is(unix.Kill(pid, 0), unix.ESRCH)
		}
		return true
	}
	// A zombie (or a task being torn down) holds no locks any more: it
	// cannot run again, it only waits for its parent to reap it.
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return sameStart(start)
}

// procStat reads the state (field 3) and start time (field 22) of pid.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(b []byte) (start uint64, state byte, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("lock: malformed /proc stat: no ')'")
	}
	// After ")" come fields 3, 4, ...: field 22 is the 20th of them.
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("lock: malformed /proc stat: too few fields")
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("lock: malformed /proc stat start time: %w", err)
	}
	return start, f[0][0], nil
}

// Holder words. A holder word is one atomic 64-bit value naming who holds a
// side of the lock and which acquisition it is:
//
//	bits  0-21  pid (Linux pids are below PID_MAX_LIMIT = 2^22)
//	bits 22-47  start time mod 2^26 clock ticks (7.7 days at 100 Hz)
//	bits 48-62  nonce: a per-acquisition counter
//	bit     63  draining: set in the writer word while its writer still
//	            waits for readers to leave, cleared when it gets in
//
// The pid and start bits find a dead holder. A pid recycled by a process
// that started a whole multiple of 2^26 ticks later looks alive: that holder
// is then only forced after Timeout, never wrongly recovered. The nonce makes
// two acquisitions by one process differ, so that a holder whose lock was
// forced and then re-acquired by another goroutine of the same process gets
// ErrLockLost instead of releasing the newcomer (unless exactly a multiple of
// 2^15 acquisitions separate them on the same word).
const (
	pidBits   = 22
	startBits = 26
	pidMask   = 1<<pidBits - 1
	startMask = 1<<startBits - 1
	nonceMask = 1<<15 - 1
	draining  = 1 << 63
)

func pack(h Holder, nonce uint16) uint64 {
	return uint64(h.Pid)&pidMask | (h.Start&startMask)<<pidBits | uint64(nonce&nonceMask)<<(pidBits+startBits)
}

func wordPid(w uint64) int { return int(w & pidMask) }

func wordStart(w uint64) uint64 { return (w >> pidBits) & startMask }

// sameProcess reports whether holder word w was made by process h.
func sameProcess(w uint64, h Holder) bool {
	return wordPid(w) == h.Pid && wordStart(w) == h.Start&startMask
}

// wordAlive reports whether the process named by holder word w may still run.
func wordAlive(w uint64) bool {
	return alive(wordPid(w), func(start uint64) bool { return start&startMask == wordStart(w) })
}

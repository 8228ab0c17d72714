package discovery

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// childRoleEnv selects the role of a re-run test binary.
const childRoleEnv = "SHMREG_DISCOVERY_CHILD"

// runChild runs a child role and returns the process exit code.
func runChild(role string) int {
	switch role {
	case "ticker":
		return childTicker()
	}
	fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
	return 2
}

// childTicker writes bench/tick = "<i> <wall-clock ns>" for i counting
// from 1, once every SHMREG_TICK_EVERY, SHMREG_TICK_COUNT times, into the
// region at SHMREG_TICK_REGION. A watcher in the parent measures how long after the
// commit its event arrives (both processes read the same CLOCK_REALTIME).
func childTicker() int {
	count, _ := strconv.Atoi(os.Getenv("SHMREG_TICK_COUNT"))
	every, _ := time.ParseDuration(os.Getenv("SHMREG_TICK_EVERY"))
	w, err := shm.OpenWriter(os.Getenv("SHMREG_TICK_REGION"), shm.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer w.Close()
	for i := 1; i <= count; i++ {
		time.Sleep(every)
		v := append(strconv.AppendInt(nil, int64(i), 10), ' ')
		v = strconv.AppendInt(v, time.Now().UnixNano(), 10)
		if err := w.Put([]byte("bench/tick"), v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// parseTick splits a bench/tick value into its sequence number and stamp.
func parseTick(v []byte) (seq int, stamp int64, ok bool) {
	a, b, found := strings.Cut(string(v), " ")
	if !found {
		return 0, 0, false
	}
	seq, err1 := strconv.Atoi(a)
	stamp, err2 := strconv.ParseInt(b, 10, 64)
	return seq, stamp, err1 == nil && err2 == nil
}

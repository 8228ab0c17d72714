package discovery

import (
	"fmt"
	"os"
	"strconv"
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

// childTicker writes bench/tick = the wall-clock time in nanoseconds, once
// every SHMREG_TICK_EVERY, SHMREG_TICK_COUNT times, into the region at
// SHMREG_TICK_REGION. A watcher in the parent measures how long after the
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
	for range count {
		time.Sleep(every)
		if err := w.Put([]byte("bench/tick"), strconv.AppendInt(nil, time.Now().UnixNano(), 10)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

package bench

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Config is what every workload shares.
type Config struct {
	// Entries in the dataset. Default 100_000.
	Entries int
	// Run is the duration, warm-up and repetitions of each measurement.
	Run Run
	// Clients is the largest number of concurrent clients (compare runs 1
	// and Clients; read runs 1 and Clients goroutines). Default 50 for
	// compare, GOMAXPROCS for read.
	Clients int
	// Seed fixes the dataset's lookup order. Default 1.
	Seed uint64
	// Dir is where regions, bbolt files and peers' data go; each workload
	// makes and removes its own temporary directory inside it. Default
	// $SHMREG_BENCH_DIR, else /dev/shm if it exists, else os.TempDir().
	Dir string
	// Progress, if set, receives a progress line per step (a terminal's
	// stderr: lines are rewritten in place with \r).
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Entries <= 0 {
		c.Entries = 100_000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Dir == "" {
		c.Dir = os.Getenv("SHMREG_BENCH_DIR")
	}
	if c.Dir == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			c.Dir = "/dev/shm"
		} else {
			c.Dir = os.TempDir()
		}
	}
	c.Run = c.Run.withDefaults()
	return c
}

// workDir makes the temporary directory of one workload.
func (c Config) workDir(workload string) (string, error) {
	d, err := os.MkdirTemp(c.Dir, "shmreg-bench-"+workload+"-")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return d, nil
}

// setup is how the read, compare and write workloads start: the workload's
// temporary directory, which the caller removes when done, and the dataset
// built from c.Entries and c.Seed, the same for every system.
func (c Config) setup(workload string) (dir string, d *Dataset, err error) {
	dir, err = c.workDir(workload)
	if err != nil {
		return "", nil, err
	}
	c.progress("building %d entries...", c.Entries)
	d, err = NewDataset(c.Entries, c.Seed)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, d, nil
}

// progress reports what runs now, rewriting one line.
func (c Config) progress(format string, a ...any) {
	if c.Progress == nil {
		return
	}
	fmt.Fprintf(c.Progress, "\r\033[K"+format, a...)
}

// progressDone ends the progress line.
func (c Config) progressDone() {
	if c.Progress != nil {
		fmt.Fprint(c.Progress, "\r\033[K")
	}
}

// stamp sets the machine on every result.
func stamp(rs []Result, m Machine) []Result {
	for i := range rs {
		rs[i].Machine = m
	}
	return rs
}

// estimate is how long a measurement takes, for the progress line.
func (c Config) estimate() time.Duration {
	return time.Duration(c.Run.Reps) * (c.Run.Duration + c.Run.Warmup)
}

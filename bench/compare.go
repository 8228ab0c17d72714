package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
)

// Systems are the systems compare measures, in report order: the floor
// (an in-process map), shmreg's region, then what a user would pick
// instead.
func Systems() []Opener {
	return []Opener{
		{"map", OpenMap},
		{"shm", OpenShm},
		{"shm-view", OpenShmView},
		{"bbolt", OpenBolt},
		{"center", OpenCenter},
		{"redis", OpenRedis},
		{"etcd", OpenEtcd},
	}
}

// Compare loads the same dataset into each system in turn and measures
// lookups with 1 client and then cfg.Clients concurrent clients. Only the
// system being measured is running. A system whose server is not installed
// gets a record with Status "not available: ..."; any other failure stops
// the comparison.
func Compare(ctx context.Context, cfg Config, systems []Opener) ([]Result, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 50
	}
	cfg = cfg.withDefaults()
	if systems == nil {
		systems = Systems()
	}
	dir, d, err := cfg.setup("compare")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer cfg.progressDone()
	clientCounts := []int{1}
	if cfg.Clients > 1 {
		clientCounts = append(clientCounts, cfg.Clients)
	}
	var out []Result
	for _, o := range systems {
		cfg.progress("%s: loading %d entries...", o.Name, d.Len())
		sys, err := o.Open(ctx, d, dir)
		if errors.Is(err, ErrNotAvailable) {
			for _, c := range clientCounts {
				out = append(out, Unavailable(o.Name, "get", c, err))
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.Name, err)
		}
		for _, c := range clientCounts {
			cfg.progress("%s: %d client(s), %d x %v...", o.Name, c, cfg.Run.Reps, cfg.Run.Duration)
			reps, err := MeasureReps(ctx, sys, d, c, cfg.Run)
			if err != nil {
				sys.Close()
				return nil, fmt.Errorf("%s: %w", o.Name, err)
			}
			r := Summarize(o.Name, "get", c, reps)
			r.Entries = d.Len()
			out = append(out, r)
		}
		if err := sys.Close(); err != nil {
			return nil, fmt.Errorf("%s close: %w", o.Name, err)
		}
		runtime.GC()
	}
	return stamp(out, ThisMachine()), nil
}

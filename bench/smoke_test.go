package bench

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tiny is a configuration that runs each measurement for a few dozen
// milliseconds: the smoke tests check that every workload runs and
// produces sane records, never how fast.
func tiny(t *testing.T) Config {
	return Config{
		Entries: 2000,
		Run:     Run{Duration: 60 * time.Millisecond, Warmup: 10 * time.Millisecond, Reps: 2},
		Clients: 3,
		Dir:     t.TempDir(),
	}
}

// checkSane asserts what every record must carry.
func checkSane(t *testing.T, rs []Result) {
	t.Helper()
	if len(rs) == 0 {
		t.Fatal("no results")
	}
	for _, r := range rs {
		if r.System == "" || r.Workload == "" || r.Clients < 1 || r.GoVersion == "" || r.Cores < 1 {
			t.Errorf("incomplete record %+v", r)
		}
		if !r.OK() {
			continue
		}
		// A registration may reach every region before its ack: a propagate p50 of 0 is sane.
		if r.OpsPerSec <= 0 || r.P50 < 0 || (r.P50 == 0 && r.Workload != "propagate") || r.P99 < r.P50 || r.P999 < r.P99 {
			t.Errorf("%s %s %d: insane figures ops/s %.0f p50 %d p99 %d p999 %d", r.System, r.Workload, r.Clients, r.OpsPerSec, r.P50, r.P99, r.P999)
		}
	}
}

func byKey(rs []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range rs {
		k := r.System + "/" + r.Workload + "/" + itoa(r.Clients)
		if r.Processes > 0 {
			k += "/p"
		}
		m[k] = r
	}
	return m
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestReadSmoke(t *testing.T) {
	cfg := ReadConfig{Config: tiny(t), Goroutines: 2, Processes: 2, Worker: testWorker}
	rs, err := Read(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, rs)
	got := byKey(rs)
	for _, k := range []string{"shm/read/1", "map/read/1", "shm/read/2", "map/read/2", "shm/read/1/p", "shm/read/2/p"} {
		r, ok := got[k]
		if !ok || !r.OK() {
			t.Errorf("missing or failed row %s: %+v", k, r)
		}
	}
	if r := got["shm/read/2/p"]; len(r.PerClient) != 2 || r.PerClient[0] <= 0 || r.PerClient[1] <= 0 {
		t.Errorf("2 reader processes: per-process rates %v, want 2 positive", r.PerClient)
	}
	// The figures that say whether the processes ran together and how much
	// CPU they had are there (their values depend on the machine's load).
	if r := got["shm/read/2/p"]; r.XOneProcess <= 0 || r.XOneProcessByCPU <= 0 || r.CPUShare <= 0 || r.WindowOverlap <= 0 || r.OpsPerCPUSec <= 0 {
		t.Errorf("2 reader processes: ratio %v, by CPU %v, CPU share %v, overlap %v, ops/CPU-s %v: want all set",
			r.XOneProcess, r.XOneProcessByCPU, r.CPUShare, r.WindowOverlap, r.OpsPerCPUSec)
	}
	if r := got["shm/read/1"]; r.OpsPerCPUSec != 0 {
		t.Errorf("in-process rows carry ops per CPU-second %v: that CPU time is not the lookups' own", r.OpsPerCPUSec)
	}
}

func TestCompareSmoke(t *testing.T) {
	cfg := tiny(t)
	rs, err := Compare(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, rs)
	got := byKey(rs)
	for _, o := range Systems() {
		for _, c := range []int{1, 3} {
			r, ok := got[o.Name+"/get/"+itoa(c)]
			if !ok {
				t.Errorf("no row for %s with %d clients", o.Name, c)
				continue
			}
			_, lookErr := exec.LookPath(map[string]string{"redis": "redis-server", "etcd": "etcd"}[o.Name])
			peer := o.Name == "redis" || o.Name == "etcd"
			switch {
			case peer && lookErr != nil:
				if !strings.HasPrefix(r.Status, ErrNotAvailable.Error()) {
					t.Errorf("%s not installed but status %q", o.Name, r.Status)
				}
			case !r.OK():
				t.Errorf("%s with %d clients: %s", o.Name, c, r.Status)
			}
		}
	}
	// The table and both chart formats render every row.
	var tb bytes.Buffer
	if err := WriteTable(&tb, rs, "shm"); err != nil {
		t.Fatal(err)
	}
	for _, o := range Systems() {
		if !strings.Contains(tb.String(), o.Name) {
			t.Errorf("%s missing from the table", o.Name)
		}
	}
	checkPlots(t, rs, 2)
	path := filepath.Join(t.TempDir(), "out.json")
	if err := WriteJSON(path, rs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil || len(back) != len(rs) || back[0].CPUModel == "" {
		t.Fatalf("JSON round trip: %d records, %v", len(back), err)
	}
}

func TestCompareReportsMissingPeer(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no redis-server, no etcd
	rs, err := Compare(context.Background(), tiny(t), []Opener{{"redis", OpenRedis}, {"etcd", OpenEtcd}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d records, want 4 (2 systems x 2 client counts)", len(rs))
	}
	for _, r := range rs {
		if r.OK() || r.OpsPerSec != 0 || !strings.Contains(r.Status, "not installed") {
			t.Errorf("%s: status %q ops/s %v, want not available and no figure", r.System, r.Status, r.OpsPerSec)
		}
	}
	if _, err := OpenRedis(context.Background(), nil, t.TempDir()); !errors.Is(err, ErrNotAvailable) {
		t.Errorf("OpenRedis without the binary: %v, want ErrNotAvailable", err)
	}
}

func TestWriteSmoke(t *testing.T) {
	rs, err := Write(context.Background(), WriteConfig{Config: tiny(t), HeartbeatEntries: 200})
	if err != nil {
		t.Fatal(err)
	}
	checkSane(t, rs)
	got := byKey(rs)
	for _, k := range []string{"shm/upsert/1", "shm/delete/1", "shm/upsert-batch/1", "center/heartbeat/1", "center/heartbeat/3"} {
		if r, ok := got[k]; !ok || !r.OK() {
			t.Errorf("missing or failed row %s: %+v", k, r)
		}
	}
}

// The agents and centers run as processes (the test binary as `shmreg
// agent` and `shmreg center`), or in the harness's process without
// AgentCmd / CenterCmd.
func TestPropagateSmoke(t *testing.T) {
	for _, tc := range []struct {
		name                string
		agentCmd, centerCmd func([]string) *exec.Cmd
		system              string
	}{
		{"processes", testAgent, testCenter, "agent"},
		{"centers-in-process", testAgent, nil, "agent-centers-inproc"},
		{"in-process", nil, nil, "agent-inproc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := PropagateConfig{Config: tiny(t), Agents: 2, Rate: 200, AgentCmd: tc.agentCmd, CenterCmd: tc.centerCmd}
			cfg.Run.Duration = 300 * time.Millisecond
			rs, err := Propagate(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkSane(t, rs)
			got := byKey(rs)
			fill, prop := got[tc.system+"/fill/1"], got[tc.system+"/propagate/2"]
			if !fill.OK() || fill.P50 <= 0 {
				t.Errorf("fill row: %+v", fill)
			}
			if !prop.OK() || prop.Samples < 30 {
				t.Errorf("propagate row: %+v (want every one of ~60 registrations seen by both agents)", prop)
			}
			// Every agent process stopped and its region is gone with the work dir.
			if left, _ := filepath.Glob(filepath.Join(cfg.Dir, "*")); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// A center process that dies (here: refuses its flags) fails the run at
// once instead of leaving the harness waiting for it to listen.
func TestPropagateCenterProcessDiesIsAnError(t *testing.T) {
	cfg := PropagateConfig{Config: tiny(t), Agents: 1, Rate: 100, AgentCmd: testAgent}
	cfg.CenterCmd = func(args []string) *exec.Cmd { return testCenter(append(args, "--no-such-flag")) }
	t0 := time.Now()
	_, err := Propagate(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "center process") {
		t.Fatalf("Propagate with a dying center: %v, want a center process error", err)
	}
	if el := time.Since(t0); el > 25*time.Second {
		t.Errorf("the failure took %v: the harness waited for a dead center", el)
	}
}

// An agent process that dies (here: refuses its flags) fails the run at
// once instead of leaving the harness waiting for its region to fill.
func TestPropagateAgentProcessDiesIsAnError(t *testing.T) {
	cfg := PropagateConfig{Config: tiny(t), Agents: 1, Rate: 100}
	cfg.AgentCmd = func(args []string) *exec.Cmd { return testAgent(append(args, "--no-such-flag")) }
	t0 := time.Now()
	_, err := Propagate(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "agent process") {
		t.Fatalf("Propagate with a dying agent: %v, want an agent process error", err)
	}
	if el := time.Since(t0); el > time.Minute {
		t.Errorf("the failure took %v: the harness waited for a dead agent", el)
	}
}

// A reader process that gets its start time after the start has passed
// does not count a window of its own: the repetition is refused (and run
// again by readProcessesTogether with a wider margin).
func TestReadProcessesMissingTheWindowIsRefused(t *testing.T) {
	cfg := ReadConfig{Config: tiny(t), Worker: testWorker}
	cfg.Config = cfg.Config.withDefaults()
	d, err := NewDataset(cfg.Entries, cfg.Seed)
	if err != nil {
		t.Fatal(err)
	}
	w, opts, err := FillRegion(d, cfg.Dir, "late")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	region := filepath.Join(opts.Dir, "late")
	if _, err := readProcessesOnce(context.Background(), cfg, region, 2, -time.Second); !errors.Is(err, errLate) {
		t.Errorf("start time already passed: %v, want errLate", err)
	}
	s, err := readProcessesTogether(context.Background(), cfg, region, 2)
	if err != nil || len(s.PerClient) != 2 || s.Overlap <= 0 {
		t.Fatalf("with the normal margin: %+v, %v", s, err)
	}
}

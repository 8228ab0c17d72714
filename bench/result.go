package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Result is one line of a report: one system under one workload with one
// number of clients, summarized over the repetitions (medians).
type Result struct {
	System   string `json:"system"`
	Workload string `json:"workload"`
	Clients  int    `json:"clients"`
	// Processes is the number of reader processes (read workload); 0 means
	// the clients were goroutines of this process.
	Processes int     `json:"processes,omitempty"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// PerClient is each client's (or process's) operations per second in
	// the median repetition.
	PerClient []float64 `json:"per_client_ops_per_sec,omitempty"`
	P50       int64     `json:"p50_ns"`
	P99       int64     `json:"p99_ns"`
	P999      int64     `json:"p999_ns"`
	Max       int64     `json:"max_ns,omitempty"`
	Samples   uint64    `json:"latency_samples,omitempty"`
	// OpsPerCPUSec (reader processes only) is operations per CPU-second
	// the processes spent: it does not depend on how much of the machine
	// other work left them, CPUShare is that share: CPU-seconds per
	// second per process (1: a whole core each), and WindowOverlap the
	// share of the measured window all processes ran at once.
	OpsPerCPUSec  float64 `json:"ops_per_cpu_sec,omitempty"`
	CPUShare      float64 `json:"cpu_share,omitempty"`
	WindowOverlap float64 `json:"window_overlap,omitempty"`
	// XOneProcess (reader processes) is this row's ops/s over one
	// process's, the median of that ratio within each repetition (the
	// counts are interleaved); XOneProcessByCPU is the same ratio had each
	// process had a core of its own (from ops per CPU-second).
	XOneProcess      float64 `json:"x_one_process,omitempty"`
	XOneProcessByCPU float64 `json:"x_one_process_by_cpu,omitempty"`
	Entries          int     `json:"entries,omitempty"`
	Reps             int     `json:"reps,omitempty"`
	// Status is "ok", or why there is no figure ("not available: redis-server
	// is not installed").
	Status string `json:"status"`
	// Note says anything a reader of the figure must know.
	Note string `json:"note,omitempty"`
	Machine
}

// OK reports whether the result carries figures.
func (r Result) OK() bool { return r.Status == "ok" }

// Machine describes where a result was measured.
type Machine struct {
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Time       string `json:"time"`
}

// ThisMachine describes the machine the process runs on.
func ThisMachine() Machine {
	return Machine{
		CPUModel:   cpuModel(),
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Time:       time.Now().UTC().Format(time.RFC3339),
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Summarize turns repetitions into a Result: the median ops/s, the
// percentiles of the median repetition's latencies (median by ops/s, so
// that throughput and latency come from the same window).
func Summarize(system, workload string, clients int, reps []*Sample) Result {
	r := Result{System: system, Workload: workload, Clients: clients, Reps: len(reps), Status: "ok"}
	if len(reps) == 0 {
		r.Status = "no repetitions"
		return r
	}
	ops := make([]float64, len(reps))
	for i, s := range reps {
		ops[i] = s.OpsPerSec()
	}
	mid := median(ops)
	var m *Sample
	for _, s := range reps {
		if s.OpsPerSec() == mid {
			m = s
			break
		}
	}
	r.OpsPerSec = mid
	for _, c := range m.PerClient {
		r.PerClient = append(r.PerClient, float64(c)/m.Elapsed.Seconds())
	}
	r.P50, r.P99, r.P999 = m.Hist.Quantile(0.50), m.Hist.Quantile(0.99), m.Hist.Quantile(0.999)
	r.Max, r.Samples = m.Hist.Max, m.Hist.N
	if m.CPU > 0 {
		r.OpsPerCPUSec = float64(m.Ops) / m.CPU.Seconds()
		r.CPUShare = m.CPU.Seconds() / m.Elapsed.Seconds() / float64(max(len(m.PerClient), 1))
	}
	r.WindowOverlap = m.Overlap
	return r
}

// Unavailable is the record of a system that could not run.
func Unavailable(system, workload string, clients int, err error) Result {
	return Result{System: system, Workload: workload, Clients: clients, Status: err.Error()}
}

// WriteJSON writes results to path as a JSON array, one record per system,
// workload and client count, each carrying the machine.
func WriteJSON(path string, results []Result) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	return nil
}

// ReadJSON reads results written by WriteJSON.
func ReadJSON(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: read results: %w", err)
	}
	var rs []Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("bench: decode results %s: %w", path, err)
	}
	return rs, nil
}

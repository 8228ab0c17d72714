package main

import (
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// quick are flags that make a bench workload run for a fraction of a
// second: these tests check the command line works end to end, never speed.
var quick = []string{"--entries", "2000", "--duration", "80ms", "--warmup", "20ms", "--reps", "1", "--quiet", "--dir"}

// TestBenchReadProcessesPlotPNG runs "bench read" with two real reader
// processes (the binary re-executing itself as read-worker) and checks the
// JSON and the PNG chart it writes.
func TestBenchReadProcessesPlotPNG(t *testing.T) {
	bin, dir := shmregBinary(t), t.TempDir()
	jsonPath, pngPath := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.png")
	args := append([]string{"bench", "read", "--goroutines", "1", "--processes", "2", "--json", jsonPath, "--plot", pngPath}, append(quick, dir)...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bench read: %v\n%s", err, out)
	}
	var rs []struct {
		System    string  `json:"system"`
		Processes int     `json:"processes"`
		OpsPerSec float64 `json:"ops_per_sec"`
		Status    string  `json:"status"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rs); err != nil {
		t.Fatal(err)
	}
	procs := map[int]bool{}
	for _, r := range rs {
		if r.Status != "ok" || r.OpsPerSec <= 0 {
			t.Errorf("row %+v", r)
		}
		procs[r.Processes] = true
	}
	if !procs[1] || !procs[2] {
		t.Errorf("no rows for 1 and 2 reader processes: %s", b)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("--plot out.png did not write a PNG: %v", err)
	}

	// "bench plot" redraws the chart from the records.
	svgPath := filepath.Join(dir, "again.svg")
	if out, err := exec.Command(bin, "bench", "plot", "--json", jsonPath, "--plot", svgPath).CombinedOutput(); err != nil {
		t.Fatalf("bench plot: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(svgPath); err != nil || !strings.Contains(string(b), "2 processes") {
		t.Errorf("bench plot: %v; the chart has no \"2 processes\" series", err)
	}
}

func TestBenchComparePlotSVG(t *testing.T) {
	bin, dir := shmregBinary(t), t.TempDir()
	svgPath := filepath.Join(dir, "out.svg")
	args := append([]string{"bench", "compare", "--systems", "map,shm", "--clients", "2", "--plot", svgPath}, append(quick, dir)...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("bench compare: %v\n%s", err, out)
	}
	b, err := os.ReadFile(svgPath)
	if err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), ">shm<") {
		t.Errorf("--plot out.svg: %v %.100q", err, b)
	}
}

// An unknown chart format is refused before the run, not after it: with
// an hour-long duration, only a check made first returns at once.
func TestBenchPlotExtensionCheckedFirst(t *testing.T) {
	bin, dir := shmregBinary(t), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"bench", "compare", "--plot", filepath.Join(dir, "out.jpg")}, append(quick, dir, "--duration", "1h")...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatal("bench compare --plot out.jpg ran the benchmark instead of refusing the file name")
	}
	if err == nil || !strings.Contains(string(out), ".png or .svg") {
		t.Errorf("--plot out.jpg: %v\n%s", err, out)
	}
}

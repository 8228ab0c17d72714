package bench

import (
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/vg"
)

// checkPlots writes rs as PNG and as SVG and checks what a reader needs:
// the PNG decodes at the chart's size with a bar of every series' colour
// on it, and the SVG names every system.
func checkPlots(t *testing.T, rs []Result, series int) {
	t.Helper()
	dir := t.TempDir()
	pngPath, svgPath := filepath.Join(dir, "out.png"), filepath.Join(dir, "out.svg")
	for _, p := range []string{pngPath, svgPath} {
		if err := WritePlotFile(p, "smoke", rs); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the .png chart is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != int(plotW/vg.Inch*plotDPI) || b.Dy() != int(plotH/vg.Inch*plotDPI) {
		t.Errorf("PNG is %dx%d", b.Dx(), b.Dy())
	}
	seen := map[int]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for i, c := range plotColors[:series] {
				cr, cg, cb, _ := c.RGBA()
				if r == cr && g == cg && bl == cb {
					seen[i]++
				}
			}
		}
	}
	for i := range series {
		if seen[i] < 100 {
			t.Errorf("series %d: %d pixels of its colour in the PNG, want bars", i, seen[i])
		}
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimSpace(string(svg)), "<?xml") || !strings.Contains(string(svg), "<svg") {
		t.Errorf("the .svg chart is not SVG: %.80q", svg)
	}
	for _, r := range rs {
		if !strings.Contains(string(svg), ">"+r.System+"<") && !strings.Contains(string(svg), ">"+r.System+"\n") {
			t.Errorf("%s missing from the SVG chart", r.System)
		}
	}
}

func TestPlotFormatFromExtension(t *testing.T) {
	rs := []Result{{System: "shm", Workload: "get", Clients: 1, OpsPerSec: 1e6, P50: 500, P99: 900, P999: 2000, Status: "ok"}}
	path := filepath.Join(t.TempDir(), "out.jpg")
	if err := WritePlotFile(path, "x", rs); err == nil || !strings.Contains(err.Error(), ".png or .svg") {
		t.Errorf("WritePlotFile(.jpg): %v, want an error naming .png and .svg", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused plot left a file behind: %v", err)
	}
	checkPlots(t, rs, 1)
}

func TestArrangeMarksUnavailable(t *testing.T) {
	rs := []Result{
		{System: "shm", Workload: "get", Clients: 1, OpsPerSec: 1e6, P99: 900, Status: "ok"},
		{System: "shm", Workload: "get", Clients: 50, OpsPerSec: 2e6, P99: 1500, Status: "ok"},
		{System: "redis", Workload: "get", Clients: 1, Status: "not available: redis-server is not installed (apt-get install redis-server)"},
		{System: "redis", Workload: "get", Clients: 50, Status: "not available: redis-server is not installed (apt-get install redis-server)"},
		{System: "shm", Workload: "read", Clients: 2, Processes: 2, OpsPerSec: 3e6, P99: 800, Status: "ok"},
	}
	d := arrange(rs)
	wantCats := []string{"shm get", "redis get", "shm read"}
	wantSeries := []string{"1 client", "50 clients", "2 processes"}
	if strings.Join(d.cats, "|") != strings.Join(wantCats, "|") || strings.Join(d.series, "|") != strings.Join(wantSeries, "|") {
		t.Fatalf("categories %q series %q, want %q %q", d.cats, d.series, wantCats, wantSeries)
	}
	if d.ops[0][0] != 1e6 || d.ops[0][1] != 2e6 || d.p99[0][1] != 1500 || d.ops[2][2] != 3e6 {
		t.Errorf("values misplaced: ops %v p99 %v", d.ops, d.p99)
	}
	if d.missing[0] != "" || d.missing[1] != "not installed" || d.ops[1][0] != 0 || d.ops[1][1] != 0 {
		t.Errorf("redis: missing %q ops %v, want marked not installed with no bars", d.missing[1], d.ops[1])
	}
}

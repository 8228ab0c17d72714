package bench

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"slices"
)

// The chart is plain SVG written here: two panels side by side, operations
// per second (higher is better) and p99 latency (lower is better), each on a
// log scale because the systems differ by orders of magnitude; one row per
// system, one bar per client count. A hand-written SVG keeps a plotting
// library and its fonts out of the binary.

const (
	plotPanelW = 430
	plotLabelW = 150
	plotBarH   = 14
	plotGap    = 10
	plotTop    = 70
)

var plotColors = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"}

type plotRow struct {
	label string
	bars  []plotBar
}

type plotBar struct {
	series   string
	ops, p99 float64
	ok       bool
	status   string
}

// seriesOf names a result's bar: its clients, or its reader processes.
func seriesOf(r Result) string {
	switch {
	case r.Processes > 0:
		return fmt.Sprintf("%d process(es)", r.Processes)
	case r.Clients == 1:
		return "1 client"
	default:
		return fmt.Sprintf("%d clients", r.Clients)
	}
}

// WritePlot writes an SVG chart of rs to w.
func WritePlot(w io.Writer, title string, rs []Result) error {
	var workloads, series []string
	for _, r := range rs {
		if !slices.Contains(workloads, r.Workload) {
			workloads = append(workloads, r.Workload)
		}
		if s := seriesOf(r); !slices.Contains(series, s) {
			series = append(series, s)
		}
	}
	var rows []*plotRow
	byLabel := map[string]*plotRow{}
	minOps, maxOps, minLat, maxLat := math.Inf(1), 0.0, math.Inf(1), 0.0
	for _, r := range rs {
		label := r.System
		if len(workloads) > 1 {
			label += " " + r.Workload
		}
		row := byLabel[label]
		if row == nil {
			row = &plotRow{label: label}
			byLabel[label] = row
			rows = append(rows, row)
		}
		b := plotBar{series: seriesOf(r), ok: r.OK() && r.OpsPerSec > 0, status: r.Status}
		if b.ok {
			b.ops, b.p99 = r.OpsPerSec, float64(r.P99)
			minOps, maxOps = math.Min(minOps, b.ops), math.Max(maxOps, b.ops)
			if b.p99 > 0 {
				minLat, maxLat = math.Min(minLat, b.p99), math.Max(maxLat, b.p99)
			}
		}
		row.bars = append(row.bars, b)
	}
	rowH := func(r *plotRow) int { return len(r.bars)*plotBarH + plotGap }
	height := plotTop + 40
	for _, r := range rows {
		height += rowH(r)
	}
	width := plotLabelW + 2*plotPanelW + 60
	var buf bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&buf, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	p(`<text x="10" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	m := ThisMachine()
	if len(rs) > 0 && rs[0].CPUModel != "" {
		m = rs[0].Machine
	}
	p(`<text x="10" y="36" fill="#555">%s · %d cores · GOMAXPROCS %d · %s · log scales</text>`+"\n",
		html.EscapeString(m.CPUModel), m.Cores, m.GOMAXPROCS, html.EscapeString(m.GoVersion))
	for i, s := range series {
		x := plotLabelW + i*120
		p(`<rect x="%d" y="46" width="12" height="12" fill="%s"/><text x="%d" y="56">%s</text>`+"\n", x, plotColors[i%len(plotColors)], x+16, html.EscapeString(s))
	}
	panels := []struct {
		title  string
		lo, hi float64
		value  func(plotBar) float64
		format func(float64) string
		x0     int
	}{
		{"operations per second (higher is better)", minOps, maxOps, func(b plotBar) float64 { return b.ops }, FormatRate, plotLabelW},
		{"p99 latency (lower is better)", minLat, maxLat, func(b plotBar) float64 { return b.p99 }, func(v float64) string { return FormatNs(int64(v)) }, plotLabelW + plotPanelW + 40},
	}
	bottom := height - 30
	for _, pn := range panels {
		if math.IsInf(pn.lo, 1) {
			continue
		}
		lo, hi := math.Floor(math.Log10(pn.lo)), math.Ceil(math.Log10(pn.hi))
		if hi <= lo {
			hi = lo + 1
		}
		scale := func(v float64) float64 {
			return float64(plotPanelW-60) * (math.Log10(v) - lo) / (hi - lo)
		}
		p(`<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", pn.x0, plotTop-4, pn.title)
		for e := lo; e <= hi; e++ {
			x := float64(pn.x0) + scale(math.Pow(10, e))
			p(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, plotTop, x, bottom)
			p(`<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", x, bottom+14, pn.format(math.Pow(10, e)))
		}
		y := plotTop + 4
		for _, row := range rows {
			for _, b := range row.bars {
				ci := slices.Index(series, b.series) % len(plotColors)
				v := pn.value(b)
				switch {
				case b.ok && v > 0:
					wbar := math.Max(scale(v), 1)
					p(`<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
						pn.x0, y, wbar, plotBarH-2, plotColors[ci], html.EscapeString(row.label), html.EscapeString(b.series), pn.format(v))
					p(`<text x="%.1f" y="%d">%s</text>`+"\n", float64(pn.x0)+wbar+3, y+plotBarH-4, pn.format(v))
				case !b.ok:
					p(`<text x="%d" y="%d" fill="#999">%s</text>`+"\n", pn.x0+3, y+plotBarH-4, html.EscapeString(shorten(b.status, 60)))
				}
				y += plotBarH
			}
			y += plotGap
		}
	}
	y := plotTop + 4
	for _, row := range rows {
		p(`<text x="%d" y="%d" text-anchor="end" font-weight="bold">%s</text>`+"\n", plotLabelW-8, y+len(row.bars)*plotBarH/2+4, html.EscapeString(row.label))
		y += rowH(row)
	}
	p("</svg>\n")
	_, err := w.Write(buf.Bytes())
	return err
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// WritePlotFile writes the SVG chart of rs to path.
func WritePlotFile(path, title string, rs []Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := WritePlot(f, title, rs); err != nil {
		f.Close()
		return fmt.Errorf("bench: plot: %w", err)
	}
	return f.Close()
}

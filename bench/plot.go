package bench

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The chart is two panels side by side, drawn with gonum.org/v1/plot:
// operations per second (higher is better) and p99 latency (lower is
// better), both on a log scale because the systems differ by orders of
// magnitude. Each system is a group of bars, one bar per client count (or
// reader-process count), each bar labelled with its figure. A system that
// could not run keeps its place on the axis, marked "not installed" (or
// its status), so that a reader sees it was left out rather than lost.

// Chart size: 11 × 5 inches, 110 dots per inch for PNG (1210 × 550 px).
const (
	plotW   = 11 * vg.Inch
	plotH   = 5 * vg.Inch
	plotDPI = 110
	// plotHeader is the strip above the panels: title, machine, legend.
	plotHeader = 0.75 * vg.Inch
)

// plotColors are the series' colors (Tableau 10), in series order.
var plotColors = []color.Color{
	color.RGBA{0x4e, 0x79, 0xa7, 0xff}, color.RGBA{0xf2, 0x8e, 0x2b, 0xff},
	color.RGBA{0x59, 0xa1, 0x4f, 0xff}, color.RGBA{0xe1, 0x57, 0x59, 0xff},
	color.RGBA{0x76, 0xb7, 0xb2, 0xff}, color.RGBA{0xb0, 0x7a, 0xa1, 0xff},
}

var plotGray = color.Gray{0x80}

// seriesOf names a result's bar: its clients, or its reader processes.
func seriesOf(r Result) string {
	switch {
	case r.Processes == 1:
		return "1 process"
	case r.Processes > 1:
		return fmt.Sprintf("%d processes", r.Processes)
	case r.Clients == 1:
		return "1 client"
	default:
		return fmt.Sprintf("%d clients", r.Clients)
	}
}

// chartData is rs arranged for the panels: categories (systems, with the
// workload when there are several) on the x axis, series within each.
type chartData struct {
	cats, series []string
	ops, p99     [][]float64 // [category][series]; 0: no bar
	missing      []string    // per category: why it has no bar at all, or ""
}

func arrange(rs []Result) chartData {
	var d chartData
	workloads := map[string]bool{}
	for _, r := range rs {
		workloads[r.Workload] = true
		if s := seriesOf(r); !slices.Contains(d.series, s) {
			d.series = append(d.series, s)
		}
	}
	for _, r := range rs {
		cat := r.System
		if len(workloads) > 1 {
			cat += " " + r.Workload
		}
		i := slices.Index(d.cats, cat)
		if i < 0 {
			i = len(d.cats)
			d.cats = append(d.cats, cat)
			d.ops = append(d.ops, make([]float64, len(d.series)))
			d.p99 = append(d.p99, make([]float64, len(d.series)))
			d.missing = append(d.missing, "")
		}
		j := slices.Index(d.series, seriesOf(r))
		if r.OK() && r.OpsPerSec > 0 {
			d.ops[i][j], d.p99[i][j] = r.OpsPerSec, float64(r.P99)
			d.missing[i] = ""
		} else if !slices.ContainsFunc(d.ops[i], func(v float64) bool { return v > 0 }) {
			d.missing[i] = missingLabel(r.Status)
		}
	}
	return d
}

// missingLabel shortens a status for the chart: "not installed" for a peer
// whose binary is missing, else the status itself.
func missingLabel(status string) string {
	if strings.Contains(status, "not installed") {
		return "not installed"
	}
	if len(status) > 24 {
		return status[:23] + "…"
	}
	return status
}

// groupedBars is a plot.Plotter drawing one group of bars per category
// from the bottom of the (log) y axis up to each value, the value written
// above each bar, and the category's missing label in place of its bars.
type groupedBars struct {
	values  [][]float64
	missing []string
	format  func(float64) string
	label   text.Style
}

// groupWidth is the share of a category's slot its bars take.
const groupWidth = 0.84

func (g *groupedBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymin, ymax = math.Inf(1), math.Inf(-1)
	for _, vs := range g.values {
		for _, v := range vs {
			if v > 0 {
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
	}
	if math.IsInf(ymin, 1) { // nothing to draw: any positive range
		ymin, ymax = 1, 10
	}
	return -0.5, float64(len(g.values)) - 0.5, ymin, ymax
}

func (g *groupedBars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	bottom := trY(p.Y.Min)
	for i, vs := range g.values {
		barW := groupWidth / float64(len(vs))
		for j, v := range vs {
			if v <= 0 {
				continue
			}
			x0 := float64(i) - groupWidth/2 + float64(j)*barW
			l, r, top := trX(x0), trX(x0+barW*0.9), trY(v)
			c.FillPolygon(plotColors[j%len(plotColors)], []vg.Point{{X: l, Y: bottom}, {X: r, Y: bottom}, {X: r, Y: top}, {X: l, Y: top}})
			// The figure above the bar; turned upright when it is wider
			// than the bar, so that neighbours never overlap.
			sty, txt := g.label, g.format(v)
			sty.XAlign, sty.YAlign = draw.XCenter, draw.YBottom
			extent := sty.Height(txt)
			if sty.Width(txt) > r-l {
				sty.Rotation, sty.XAlign, sty.YAlign = math.Pi/2, draw.XLeft, draw.YCenter
				extent = sty.Width(txt)
			}
			at := vg.Point{X: (l + r) / 2, Y: top + 2}
			if at.Y+extent > c.Max.Y {
				// No room above the bar: inside its top end, in white.
				at.Y, sty.Color = top-2, color.White
				if sty.Rotation != 0 {
					sty.XAlign = draw.XRight
				} else {
					sty.YAlign = draw.YTop
				}
			}
			c.FillText(sty, at, txt)
		}
		if g.missing[i] != "" {
			sty := g.label
			sty.Font.Size = 10
			sty.Color, sty.Rotation, sty.XAlign, sty.YAlign = plotGray, math.Pi/2, draw.XLeft, draw.YCenter
			c.FillText(sty, vg.Point{X: trX(float64(i)), Y: bottom + 4}, g.missing[i])
		}
	}
}

func formatLatency(v float64) string { return FormatNs(int64(v)) }

// roundLabel drops the zero decimals of a round figure: "10.00M" → "10M".
func roundLabel(s string) string {
	end := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if end < 0 {
		end = len(s)
	}
	num := s[:end]
	if strings.Contains(num, ".") {
		num = strings.TrimRight(strings.TrimRight(num, "0"), ".")
	}
	return num + s[end:]
}

// logTicks marks every power of ten with a label in the panel's unit and
// the 2..9 multiples between them as minor ticks.
func logTicks(format func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		var ts []plot.Tick
		for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi*1.0001; e++ {
			base := math.Pow(10, e)
			for m := 1.0; m < 10; m++ {
				v := base * m
				if v < lo*0.9999 || v > hi*1.0001 {
					continue
				}
				t := plot.Tick{Value: v}
				if m == 1 {
					t.Label = roundLabel(format(v))
				}
				ts = append(ts, t)
			}
		}
		return ts
	})
}

// panel makes one of the two plots.
func panel(d chartData, title string, values [][]float64, format func(float64) string) *plot.Plot {
	p := plot.New()
	for _, f := range []*font.Font{&p.Title.TextStyle.Font, &p.X.Label.TextStyle.Font, &p.Y.Label.TextStyle.Font, &p.X.Tick.Label.Font, &p.Y.Tick.Label.Font} {
		f.Variant = "Sans"
	}
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 12
	// The y axis label is drawn by drawYLabel: gonum centres a rotated
	// label on the arithmetic middle of the axis range, which on a log
	// scale is near the top, and pads the plot to make room for it.
	p.Y.Label.Text = ""
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks(format)
	ticks := make([]string, len(d.cats))
	for i, c := range d.cats {
		ticks[i] = c
		if d.missing[i] != "" {
			ticks[i] += "\n(n/a)"
		}
	}
	label := p.X.Tick.Label
	label.Font.Size = 8
	grid := plotter.NewGrid()
	grid.Vertical.Color = nil
	grid.Horizontal.Color = color.Gray{0xdd}
	p.Add(grid, &groupedBars{values: values, missing: d.missing, format: format, label: label})
	p.NominalX(ticks...)
	p.X.Tick.Label.Font.Size = 11
	// Whole decades, with room above the tallest bar for its figure.
	p.Y.Min = math.Pow(10, math.Floor(math.Log10(p.Y.Min)))
	p.Y.Max = math.Pow(10, math.Ceil(math.Log10(p.Y.Max*3)))
	return p
}

// WritePlot draws a chart of rs with a title and writes it to w as format
// "png" or "svg".
func WritePlot(w io.Writer, format, title string, rs []Result) error {
	var c vg.CanvasWriterTo
	switch format {
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotW, plotH), vgimg.UseDPI(plotDPI))}
	case "svg":
		c = vgsvg.New(plotW, plotH)
	default:
		return fmt.Errorf("bench: plot format %q: want png or svg", format)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())

	d := arrange(rs)
	plots := []*plot.Plot{
		panel(d, "Lookups per second (higher is better)", d.ops, FormatRate),
		panel(d, "p99 latency (lower is better)", d.p99, formatLatency),
	}
	ylabels := []string{"lookups per second (log scale)", "p99 latency (log scale)"}
	body := draw.Crop(dc, 0, 0, 0, -plotHeader)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: 0.4 * vg.Inch, PadLeft: 0.1 * vg.Inch, PadRight: 0.15 * vg.Inch, PadBottom: 0.1 * vg.Inch}
	// Both panels have the same title, x axis and tick heights, so plain
	// tiles line their data areas up.
	for i, p := range plots {
		tile := tiles.At(body, i, 0)
		sty := p.X.Tick.Label
		sty.Rotation, sty.XAlign, sty.YAlign = math.Pi/2, draw.XCenter, draw.YTop
		sty.Font.Size = 11
		inner := draw.Crop(tile, sty.Height(ylabels[i])+6, 0, 0, 0)
		data := p.DataCanvas(inner)
		tile.FillText(sty, vg.Point{X: tile.Min.X, Y: data.Center().Y}, ylabels[i])
		p.Draw(inner)
	}
	drawHeader(dc, plots[0].Title.TextStyle, title, rs, d.series)
	_, err := c.WriteTo(w)
	return err
}

// drawHeader writes the title, the machine and the legend above the
// panels.
func drawHeader(c draw.Canvas, base text.Style, title string, rs []Result, series []string) {
	x, y := c.Min.X+0.15*vg.Inch, c.Max.Y-0.12*vg.Inch
	sty := base
	sty.XAlign, sty.YAlign = draw.XLeft, draw.YTop
	sty.Font.Size, sty.Font.Weight = 14, xfont.WeightBold
	c.FillText(sty, vg.Point{X: x, Y: y}, title)
	y -= sty.Height(title) + 3
	sty.Font.Size, sty.Font.Weight, sty.Color = 9, xfont.WeightNormal, color.Gray{0x44}
	sub := machineLine(rs)
	c.FillText(sty, vg.Point{X: x, Y: y}, sub)

	// The legend, on the title's line, right-aligned.
	sty.Font.Size, sty.Color, sty.YAlign = 10, color.Black, draw.YCenter
	const box = 9
	var total vg.Length
	for _, s := range series {
		total += box + 4 + sty.Width(s) + 14
	}
	lx, ly := c.Max.X-0.2*vg.Inch-total, c.Max.Y-0.2*vg.Inch
	for i, s := range series {
		c.FillPolygon(plotColors[i%len(plotColors)], []vg.Point{
			{X: lx, Y: ly - box/2}, {X: lx + box, Y: ly - box/2}, {X: lx + box, Y: ly + box/2}, {X: lx, Y: ly + box/2},
		})
		c.FillText(sty, vg.Point{X: lx + box + 4, Y: ly}, s)
		lx += box + 4 + sty.Width(s) + 14
	}
}

// machineLine says where and how rs was measured.
func machineLine(rs []Result) string {
	m := ThisMachine()
	var entries, reps int
	for _, r := range rs {
		if r.CPUModel != "" {
			m = r.Machine
		}
		entries, reps = max(entries, r.Entries), max(reps, r.Reps)
	}
	parts := []string{m.CPUModel, fmt.Sprintf("%d cores", m.Cores), fmt.Sprintf("GOMAXPROCS %d", m.GOMAXPROCS), m.GoVersion}
	if entries > 0 {
		parts = append(parts, thousands(entries)+" entries")
	}
	if reps > 0 {
		parts = append(parts, fmt.Sprintf("median of %d repetitions", reps))
	}
	return strings.Join(parts, " · ") + " · log scales"
}

// thousands writes n with thousands separators: 100,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WritePlotFile writes the chart of rs to path, as PNG or SVG by its
// extension (.png, .svg).
func WritePlotFile(path, title string, rs []Result) error {
	format := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	if format != "png" && format != "svg" {
		return fmt.Errorf("bench: plot %s: the file name must end in .png or .svg", path)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := WritePlot(f, format, title, rs); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("bench: plot: %w", err)
	}
	return f.Close()
}

package bench

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// WriteFanoutTable prints the fanout rows as an aligned table: one row
// per S and W.
func WriteFanoutTable(w io.Writer, rs []FanoutResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agents\tentries\tfill (last)\tRSS idle\tper agent\tW\twrites/s\tack p99\tp50\tp99\tmax\tsend→p99\tmissing\tcenter CPU\tper record\tper frame\trec/frame\tharness CPU\tload\t")
	for _, r := range rs {
		f := r.Fanout
		if f.Rate == 0 { // no figures: the S failed before its steady phases
			fmt.Fprintf(tw, "%s\t%s\t-\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t%s\t  %s\n", thousands(r.Clients), thousands(r.Entries), strings.Fields(f.LoadAverage + " ?")[0], r.Status)
			continue
		}
		recPerFrame := "-"
		if f.Pushes > 0 {
			recPerFrame = fmt.Sprintf("%.1f", float64(f.PushedRecords)/float64(f.Pushes))
		}
		missing := thousands(int(f.Missing))
		if !r.OK() {
			missing += " !"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%.2f\t%s\t\n",
			thousands(r.Clients), thousands(r.Entries), FormatNs(f.FillNs), formatBytes(f.RSSIdle), formatBytes(f.RSSPerAgent),
			f.Rate, f.WritesPerSec, FormatNs(f.AckP99Ns), FormatNs(r.P50), FormatNs(r.P99), FormatNs(r.Max), FormatNs(f.SendP99Ns), missing,
			f.CenterCPU, formatNsFloat(f.CPUPerRecordNs), formatNsFloat(f.CPUPerFrameNs), recPerFrame, f.HarnessCPU, strings.Fields(f.LoadAverage + " ?")[0])
	}
	return tw.Flush()
}

// fanoutNote is what the table has no room for.
func fanoutNote(f FanoutFigures) string {
	return fmt.Sprintf("%d wide agents (svc/), %d narrow (%d of %d services each); center start %v, dial %v; "+
		"fill: median %v, last %v, %s records, center %.2f cores (%s CPU per snapshot record), harness %.2f cores; "+
		"RSS base %s, +%s per connection before subscribing (heap +%s (%d GCs meanwhile), stacks +%s), +%s per idle agent (heap +%s, %d goroutines), peak %s; idle center %.2f cores, harness %.2f; "+
		"steady: %d writes (%d late), ack p50 %s p99 %s, delivery from the send p50 %s p99 %s max %s, %s deliveries, %s early (counted 0), %d stray, %d resnapshots, %d failed agents; "+
		"window %v: %s push frames, %s records pushed, %d center GCs; at its end RSS %s, heap +%s per agent; load %s",
		f.WideAgents, f.Agents-f.WideAgents, f.Narrow, f.Services,
		time.Duration(f.CenterStartNs).Round(time.Millisecond), time.Duration(f.DialNs).Round(time.Millisecond),
		time.Duration(f.FillP50Ns).Round(time.Millisecond), time.Duration(f.FillNs).Round(time.Millisecond), thousands(int(f.FillRecords)),
		f.FillCenterCPU, formatNsFloat(f.FillCPUPerRecNs), f.FillHarnessCPU,
		formatBytes(f.RSSBase), formatBytes(f.RSSPerConnection), formatBytes(f.HeapPerConnection), f.ConnectGCs, formatBytes(f.StackPerConnection), formatBytes(f.RSSPerAgent), formatBytes(f.HeapPerAgent), f.GoroutinesPerConn,
		formatBytes(f.RSSPeak), f.IdleCenterCPU, f.IdleHarnessCPU,
		f.Writes, f.LateWrites, FormatNs(f.AckP50Ns), FormatNs(f.AckP99Ns), FormatNs(f.SendP50Ns), FormatNs(f.SendP99Ns), FormatNs(f.SendMaxNs), thousands(int(f.Delivered)), thousands(int(f.Early)), f.Stray, f.Resnapshots, f.FailedAgents,
		time.Duration(f.WindowNs).Round(time.Millisecond), thousands(int(f.Pushes)), thousands(int(f.PushedRecords)), f.GCs, formatBytes(f.RSSEnd), formatBytes(f.HeapEndPerAgent), f.LoadAverage)
}

// formatBytes prints a size with a binary unit: 512 B, 230 KB, 1.3 GB.
func formatBytes(n int64) string {
	v, neg := float64(n), n < 0
	if neg {
		v = -v
	}
	var s string
	switch {
	case v >= 1<<30:
		s = fmt.Sprintf("%.2f GB", v/(1<<30))
	case v >= 1<<20:
		s = fmt.Sprintf("%.0f MB", v/(1<<20))
	case v >= 1<<10:
		s = fmt.Sprintf("%.0f KB", v/(1<<10))
	default:
		s = fmt.Sprintf("%.0f B", v)
	}
	if neg {
		s = "-" + s
	}
	return s
}

// formatNsFloat is FormatNs for a fractional figure (CPU per record).
func formatNsFloat(ns float64) string {
	if ns <= 0 {
		return "-"
	}
	if ns < 1000 {
		return fmt.Sprintf("%.0fns", ns)
	}
	return FormatNs(int64(math.Round(ns)))
}

// WriteFanoutJSON writes rows to path as a JSON array; each is a Result
// (so ReadJSON and `bench plot` read it) with its "fanout" figures.
func WriteFanoutJSON(path string, rs []FanoutResult) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	return nil
}

// WriteFanoutPlotFile draws delivery p99 and center CPU per delivered
// record against S, one bar per W, as PNG or SVG by path's extension. It
// uses plot.go's panels and header.
func WriteFanoutPlotFile(path, title string, rs []FanoutResult) error {
	format := strings.ToLower(strings.TrimPrefix(filepath.Ext(path), "."))
	var c vg.CanvasWriterTo
	switch format {
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(plotW, plotH), vgimg.UseDPI(plotDPI))}
	case "svg":
		c = vgsvg.New(plotW, plotH)
	default:
		return fmt.Errorf("bench: plot %s: the file name must end in .png or .svg", path)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())

	var d chartData
	var p99, cpu [][]float64
	for _, r := range rs {
		cat := thousands(r.Clients) + " agents"
		ser := fmt.Sprintf("%d writes/s", r.Fanout.Rate)
		if !slices.Contains(d.series, ser) {
			d.series = append(d.series, ser)
		}
		if !slices.Contains(d.cats, cat) {
			d.cats = append(d.cats, cat)
			d.missing = append(d.missing, "")
		}
	}
	for range d.cats {
		p99 = append(p99, make([]float64, len(d.series)))
		cpu = append(cpu, make([]float64, len(d.series)))
	}
	plain := make([]Result, len(rs))
	for k, r := range rs {
		i := slices.Index(d.cats, thousands(r.Clients)+" agents")
		j := slices.Index(d.series, fmt.Sprintf("%d writes/s", r.Fanout.Rate))
		p99[i][j], cpu[i][j] = float64(r.P99), r.Fanout.CPUPerRecordNs
		plain[k] = r.Result
		plain[k].Reps = 0
	}
	plots := []*plot.Plot{
		panel(d, "Delivery p99, ack to agent (lower is better)", p99, formatLatency),
		panel(d, "Center CPU per delivered record (lower is better)", cpu, func(v float64) string { return formatNsFloat(v) }),
	}
	ylabels := []string{"delivery p99 (log scale)", "center CPU per record (log scale)"}
	body := draw.Crop(dc, 0, 0, 0, -plotHeader)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: 0.4 * vg.Inch, PadLeft: 0.1 * vg.Inch, PadRight: 0.15 * vg.Inch, PadBottom: 0.1 * vg.Inch}
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
	drawHeader(dc, plots[0].Title.TextStyle, title, plain, d.series)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("bench: plot: %w", err)
	}
	return f.Close()
}

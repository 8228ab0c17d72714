package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteTable prints results as an aligned table. If ref names a system, a
// last column gives, for every other row of the same workload and clients,
// how many times faster ref is (ref's ops/s over the row's), and how many
// times lower ref's p99 is.
func WriteTable(w io.Writer, rs []Result, ref string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "system\tworkload\tclients\tprocs\tops/s\tper client\tp50\tp99\tp99.9\t"
	if ref != "" {
		hdr += ref + " ×ops/s\t" + ref + " ÷p99\t"
	}
	fmt.Fprintln(tw, hdr)
	for _, r := range rs {
		procs := "-"
		if r.Processes > 0 {
			procs = strconv.Itoa(r.Processes)
		}
		if !r.OK() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t\t\t\t\t", r.System, r.Workload, r.Clients, procs, r.Status)
			if ref != "" {
				fmt.Fprint(tw, "\t\t")
			}
			fmt.Fprintln(tw)
			continue
		}
		per := "-"
		if n := len(r.PerClient); n > 1 {
			per = FormatRate(r.OpsPerSec / float64(n))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t", r.System, r.Workload, r.Clients, procs,
			FormatRate(r.OpsPerSec), per, FormatNs(r.P50), FormatNs(r.P99), FormatNs(r.P999))
		if ref != "" {
			x, p := "", ""
			if b, ok := find(rs, ref, r); ok && r.System != ref {
				x = FormatRatio(b.OpsPerSec / r.OpsPerSec)
				if b.P99 > 0 {
					p = FormatRatio(float64(r.P99) / float64(b.P99))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t", x, p)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// find returns the result of system sys with like's workload, clients and
// processes.
func find(rs []Result, sys string, like Result) (Result, bool) {
	for _, r := range rs {
		if r.System == sys && r.Workload == like.Workload && r.Clients == like.Clients && r.Processes == like.Processes && r.OK() && r.OpsPerSec > 0 {
			return r, true
		}
	}
	return Result{}, false
}

// FormatRatio prints a ratio with as many digits as a reader needs: 0.45x,
// 2.1x, 48x, 11,785x.
func FormatRatio(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2fx", v)
	case v < 10:
		return fmt.Sprintf("%.1fx", v)
	default:
		return thousands(int(math.Round(v))) + "x"
	}
}

// FormatRate prints an operations-per-second figure with a unit: 12.3M,
// 456K, 789.
func FormatRate(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fK", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// FormatNs prints a latency in nanoseconds with a readable unit.
func FormatNs(ns int64) string {
	if ns <= 0 {
		return "-"
	}
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(ns)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(ns)/1e6)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

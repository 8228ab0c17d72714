package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shmreg/shmreg/shm"
)

// metrics are the agent's Prometheus metrics, on a registry of its own (never
// the global one), exported on Options.Metrics and by Agent.Metrics.
type metrics struct {
	reg          *prometheus.Registry
	revisionLag  prometheus.Gauge
	applySeconds prometheus.Histogram
	applied      prometheus.Counter
	reconnects   prometheus.Counter
	failovers    prometheus.Counter
	held         prometheus.Gauge
	connected    prometheus.Gauge

	degraded       prometheus.Gauge
	commitFailures prometheus.Counter
}

func newMetrics(stat func() shm.Stat) *metrics {
	const ns, sub = "shmreg", "agent"
	m := &metrics{reg: prometheus.NewRegistry()}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
		m.reg.MustRegister(g)
		return g
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	fromStat := func(name, help string, f func(shm.Stat) uint64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help},
			func() float64 { return float64(f(stat())) }))
	}
	fromStat("entries", "Live entries in the region.", func(s shm.Stat) uint64 { return s.Entries })
	fromStat("region_used_bytes", "Bytes of the region in use (header and allocated pool).", func(s shm.Stat) uint64 { return s.UsedBytes })
	fromStat("region_free_bytes", "Bytes of the region's pool still free.", func(s shm.Stat) uint64 { return s.FreeBytes })
	m.revisionLag = gauge("revision_lag", "Revisions between the newest batch received from the center and the last one applied to the region.")
	m.applySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "apply_seconds",
		Help:    "Time to apply one pushed batch to the region (diff and commit).",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
	})
	m.reg.MustRegister(m.applySeconds)
	m.applied = counter("applied_records_total", "Records written to or deleted from the region.")
	m.reconnects = counter("reconnects_total", "Connections to a center after the first.")
	m.failovers = counter("failovers_total", "Connections to a center other than the one the region followed.")
	m.held = gauge("held_deletions", "Suspect deletions held back (see Options.SuspectShare).")
	m.connected = gauge("connected", "1 while connected to a center.")
	m.degraded = gauge("region_degraded", "1 while the region cannot be written (full, or its file system full or failing): readers keep its last data, the agent retries without a connection.")
	m.commitFailures = counter("region_commit_failures_total", "Region commits that failed (first attempts and retries).")
	return m
}

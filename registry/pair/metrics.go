package pair

import "github.com/prometheus/client_golang/prometheus"

// pairMetrics are the backend's Prometheus metrics, beside the front's (the
// same namespace: they describe one center).
type pairMetrics struct {
	replLag      prometheus.Gauge
	replSent     prometheus.Counter
	repairs      prometheus.Counter
	purged       prometheus.Counter
	clockRefused *prometheus.CounterVec
	restamped    prometheus.Counter
}

func newPairMetrics(reg prometheus.Registerer) (*pairMetrics, error) {
	const ns, sub = "shmreg", "center"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &pairMetrics{
		replLag:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "replication_lag_seconds", Help: "Age of the newest change the peer acknowledged, at acknowledgement."}),
		replSent: c("replicated_records_total", "Records sent to the peer."),
		repairs:  c("antientropy_repairs_total", "Records repaired by anti-entropy (either direction)."),
		purged:   c("tombstones_purged_total", "Tombstones purged after the retention period."),
		clockRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "clock_refused_total",
			Help: "Versions refused for being more than MaxClockAhead ahead of this center's clock, by source (client: a write's after, ignored; peer: a replicated record, not applied)."}, []string{"source"}),
		restamped: c("restamped_total", "Records stamped anew because the first attempt of a write retried here arrived from the peer after later writes (see retry.go)."),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.replLag, m.replSent, m.repairs, m.purged, m.clockRefused, m.restamped} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

package cluster

import "github.com/prometheus/client_golang/prometheus"

// clusterMetrics are the backend's Prometheus metrics, beside the front's
// (the same namespace: they describe one center).
type clusterMetrics struct {
	applied       prometheus.Counter
	refused       prometheus.Counter
	commitSeconds prometheus.Histogram
	leasesLost    prometheus.Counter
	supervisor    prometheus.Gauge
	steps         *prometheus.CounterVec
}

func newClusterMetrics(reg prometheus.Registerer) (*clusterMetrics, error) {
	const ns, sub = "shmreg", "cluster"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &clusterMetrics{
		applied:    c("watch_changes_total", "Changes applied from the etcd watch and published."),
		refused:    c("writes_refused_total", "Write batches refused with unavailable (no leader, no quorum, timeout)."),
		leasesLost: c("leases_lost_total", "Times this center's etcd lease was lost (its instances expired)."),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "commit_seconds",
			Help: "Time of one etcd transaction (a batch of writes) until committed.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		supervisor: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "supervisor",
			Help: "1 while this center is the elected promotion supervisor."}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "supervisor_steps_total",
			Help: "Promotion supervisor steps, by step (voter_down, promoted, removed, refused) and result (ok, error)."}, []string{"step", "result"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.applied, m.refused, m.leasesLost, m.commitSeconds, m.supervisor, m.steps} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

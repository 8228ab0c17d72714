package center

import "github.com/prometheus/client_golang/prometheus"

// centerMetrics are the front's Prometheus metrics. They are always
// counted; they are exported only if Options.Registerer is set.
type centerMetrics struct {
	connections     prometheus.Gauge
	connectionsSeen prometheus.Counter
	badFrames       prometheus.Counter
	registrations   prometheus.Counter
	heartbeats      prometheus.Counter
	writes          prometheus.Counter
	expiries        prometheus.Counter
	held            prometheus.Gauge
	holds           prometheus.Counter
	pushes          prometheus.Counter
	pushedRecords   prometheus.Counter
	pushEncodes     prometheus.Counter
	cutOff          prometheus.Counter
	snapshotsTaken  prometheus.Counter
	snapshotsShared prometheus.Counter
	refusedConns    *prometheus.CounterVec
	probes          prometheus.Counter
	healthy         prometheus.Gauge
	storeFailures   prometheus.Counter
}

// records, called at each scrape, counts the records held.
func newCenterMetrics(reg prometheus.Registerer, records func() float64) (*centerMetrics, error) {
	const ns, sub = "shmreg", "center"
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &centerMetrics{
		connections:     g("connections", "Open client connections."),
		connectionsSeen: c("connections_total", "Connections accepted."),
		badFrames:       c("bad_frames_total", "Connections closed for a malformed, oversized or unauthorized frame."),
		registrations:   c("registrations_total", "Instance registrations accepted."),
		heartbeats:      c("heartbeats_total", "Instance heartbeats received (per instance)."),
		writes:          c("writes_total", "Changes committed (any origin)."),
		expiries:        c("expiries_total", "Instances expired for a missed TTL or a dropped connection."),
		held:            g("self_preservation_held", "Instances currently held back from expiry by self-preservation."),
		holds:           c("self_preservation_events_total", "Times self-preservation held back a mass expiry."),
		pushes:          c("pushes_total", "Push frames sent to subscribers."),
		pushedRecords:   c("pushed_records_total", "Records pushed to subscribers."),
		snapshotsTaken:  c("snapshots_taken_total", "Snapshots made for subscriptions (a scan and a sort of the records under their prefixes)."),
		snapshotsShared: c("snapshots_shared_total", "Subscriptions given a snapshot another had taken (with the changes since)."),
		cutOff:          c("cut_off_total", "Connections closed for not keeping up with their pushes or replies."),
		pushEncodes:     c("push_encodes_total", "Push frames encoded (each is sent to every subscriber of the same prefixes that needs it)."),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "connections_refused_total",
			Help: "Connections closed at accept for a limit, by reason (total, per_addr)."}, []string{"reason"}),
		probes:        c("probes_total", "Connections closed before their hello (health checks, port probes)."),
		healthy:       g("healthy", "1 while the center can persist; 0 once its store has failed for longer than UnhealthyAfter (it then serves no subscriptions)."),
		storeFailures: c("store_failures_total", "Store transactions that failed (the writes in them were refused with unavailable)."),
	}
	m.healthy.Set(1)
	if reg != nil {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "records",
			Help: "Records held, tombstones included."}, records)); err != nil {
			return nil, err
		}
		for _, col := range []prometheus.Collector{m.connections, m.connectionsSeen, m.badFrames, m.registrations,
			m.heartbeats, m.writes, m.expiries, m.held, m.holds, m.pushes, m.pushedRecords, m.pushEncodes, m.cutOff, m.snapshotsTaken, m.snapshotsShared,
			m.refusedConns, m.probes, m.healthy, m.storeFailures} {
			if err := reg.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

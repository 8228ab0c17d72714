package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/shmreg/shmreg/registry/center"
)

// Options configure a cluster center: its front, its etcd member (or the
// external etcd it uses) and the backend's own settings. The zero value of
// every field means its documented default.
type Options struct {
	center.Options

	// Name is this center's name: its etcd member name when it embeds a
	// member, and the owner written into every instance it registers (see
	// Backend.judges). Required, unique in the cluster.
	Name string

	// Endpoints, if set, are the client URLs of an etcd cluster the user
	// runs: no member is embedded and the member fields below are ignored.
	Endpoints []string

	// DataDir holds the embedded member's WAL and snapshots. Required when
	// embedding.
	DataDir string
	// PeerURL is the embedded member's raft URL (listened on and
	// advertised), e.g. http://10.0.0.1:2380.
	PeerURL string
	// ClientURL is the embedded member's etcd client URL (listened on and
	// advertised). Default: on 127.0.0.1, the port after PeerURL's, so that
	// etcd's own API is reachable only from this machine.
	ClientURL string
	// InitialCluster lists the founding voters, name=peerURL,... (etcd's
	// --initial-cluster). Ignored once DataDir holds a member.
	InitialCluster string
	// ClusterToken tells this cluster from others at bootstrap. Default
	// "shmreg".
	ClusterToken string
	// Listener joins the cluster as a learner (a non-voting listener center,
	// promoted when a voter is lost): it asks Join to add it, then starts
	// with the existing cluster's membership.
	Listener bool
	// Join are client URLs of the existing cluster, for a listener's first
	// start.
	Join []string
	// TickMs and ElectionMs are raft's heartbeat and election timeout.
	// Default 100 and 1000 (etcd's).
	TickMs, ElectionMs uint
	// EtcdLogLevel is the embedded member's log level. Default "fatal"
	// (quiet: the center reports what matters itself); "debug" shows
	// everything etcd says, and makes the client talk too.
	EtcdLogLevel string

	// Prefix is where shmreg keeps its keys in etcd: records under
	// Prefix+"records/", the supervisor's election under
	// Prefix+"supervisor/". Default "/shmreg/".
	Prefix string
	// LeaseTTL is the lifetime of this center's etcd lease, to which every
	// instance it registers is attached: instances of a center that died
	// disappear LeaseTTL after its last keep-alive. Default 10s.
	LeaseTTL time.Duration
	// WriteTimeout bounds one etcd write: a write not committed by then
	// (no quorum reachable) is refused with unavailable. Default 5s.
	WriteTimeout time.Duration
	// TombstoneRetention is how long a delete is remembered in memory for
	// subscribers resuming from before it. Default 1h.
	TombstoneRetention time.Duration
	// MaxTombstones bounds the deletes remembered. Default 100,000.
	MaxTombstones int

	// PromoteAfter is how long a voter must be unreachable before the
	// supervisor replaces it by a caught-up listener. Default 10s.
	PromoteAfter time.Duration
	// NoPromote turns the promotion supervisor off.
	NoPromote bool
	// SuperviseInterval is how often the supervisor looks at the members.
	// Default 1s.
	SuperviseInterval time.Duration
}

func (o Options) withDefaults() (Options, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.LeaseTTL, 10*time.Second)
	def(&o.WriteTimeout, 5*time.Second)
	def(&o.TombstoneRetention, time.Hour)
	def(&o.PromoteAfter, 10*time.Second)
	def(&o.SuperviseInterval, time.Second)
	if o.MaxTombstones <= 0 {
		o.MaxTombstones = 100_000
	}
	if o.Prefix == "" {
		o.Prefix = "/shmreg/"
	}
	if o.ClusterToken == "" {
		o.ClusterToken = "shmreg"
	}
	if o.EtcdLogLevel == "" {
		o.EtcdLogLevel = "fatal"
	}
	if o.TickMs == 0 {
		o.TickMs = 100
	}
	if o.ElectionMs == 0 {
		o.ElectionMs = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Name == "" {
		return o, fmt.Errorf("cluster: a center needs a name (--name)")
	}
	if len(o.Endpoints) > 0 {
		return o, nil
	}
	if o.DataDir == "" {
		return o, fmt.Errorf("cluster: an embedded member needs a data directory (--data)")
	}
	if o.PeerURL == "" {
		return o, fmt.Errorf("cluster: an embedded member needs its raft URL (--raft-listen)")
	}
	pu, err := url.Parse(o.PeerURL)
	if err != nil || pu.Port() == "" {
		return o, fmt.Errorf("cluster: bad raft URL %q: want http://host:port", o.PeerURL)
	}
	if o.ClientURL == "" {
		port, _ := strconv.Atoi(pu.Port())
		o.ClientURL = fmt.Sprintf("http://127.0.0.1:%d", port+1)
	}
	if o.Listener && len(o.Join) == 0 && !memberExists(o.DataDir) {
		return o, fmt.Errorf("cluster: a listener's first start needs the client URLs of the cluster it joins (--join)")
	}
	if !o.Listener && o.InitialCluster == "" && !memberExists(o.DataDir) {
		return o, fmt.Errorf("cluster: a voter's first start needs --initial-cluster name=url,...")
	}
	return o, nil
}

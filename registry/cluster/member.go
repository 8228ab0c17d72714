package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// member is the etcd member a center embeds: raft, the WAL and snapshots
// in DataDir, and etcd's client API on ClientURL (loopback by default).
type member struct {
	e *embed.Etcd
}

// memberExists reports whether dir already holds an etcd member (then the
// initial cluster and the listener's join are ignored: etcd restarts it
// from its WAL).
func memberExists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "member", "wal"))
	return err == nil
}

// readyTimeout bounds how long a member may take to join its cluster.
const readyTimeout = time.Minute

// startMember starts the embedded member, joining as a learner first if
// asked to.
func startMember(ctx context.Context, o Options) (*member, error) {
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.DataDir
	cfg.TickMs, cfg.ElectionMs = o.TickMs, o.ElectionMs
	cfg.LogLevel = o.EtcdLogLevel
	cfg.LogOutputs = []string{"stderr"}
	cfg.InitialClusterToken = o.ClusterToken
	cfg.StrictReconfigCheck = true
	pu, err := url.Parse(o.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft URL: %w", err)
	}
	cu, err := url.Parse(o.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("cluster: client URL: %w", err)
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	// No HTTP /metrics or /health listeners of etcd's own.
	cfg.ListenMetricsUrls = nil
	// etcd keeps every revision until compacted, and its default is never:
	// the database would grow with every write (heartbeats are not writes,
	// but registrations, expiries and config are) until its quota stops
	// all writes. The centers need history only to restart a broken watch.
	cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "1h"

	existing := memberExists(o.DataDir)
	if err := checkMarker(o); err != nil {
		return nil, err
	}
	switch {
	case existing:
		cfg.ClusterState = embed.ClusterStateFlagExisting
		if o.InitialCluster != "" {
			cfg.InitialCluster = o.InitialCluster
		} else {
			cfg.InitialCluster = o.Name + "=" + o.PeerURL
		}
	case o.Listener:
		ic, err := addLearner(ctx, o)
		if err != nil {
			return nil, err
		}
		cfg.InitialCluster = ic
		cfg.ClusterState = embed.ClusterStateFlagExisting
	default:
		if !strings.Contains(","+o.InitialCluster, ","+o.Name+"=") {
			return nil, fmt.Errorf("cluster: this center's name %q is not in --initial-cluster %q", o.Name, o.InitialCluster)
		}
		cfg.InitialCluster = o.InitialCluster
		cfg.ClusterState = embed.ClusterStateFlagNew
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: etcd configuration: %w", err)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: start the etcd member %q in %s: %w", o.Name, o.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("cluster: etcd member %q: %w", o.Name, err)
	case <-e.Server.StopNotify():
		e.Close()
		return nil, fmt.Errorf("cluster: etcd member %q stopped while joining (a data directory of another cluster, or a mismatched --initial-cluster?)", o.Name)
	case <-time.After(readyTimeout):
		e.Close()
		return nil, fmt.Errorf("cluster: etcd member %q did not join its cluster within %v: check --initial-cluster (every voter started?), --raft-listen and --data", o.Name, readyTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	if err := writeMarker(o, uint64(e.Server.Cluster().ID())); err != nil {
		e.Close()
		return nil, err
	}
	return &member{e: e}, nil
}

// marker is what a data directory says of the member it holds, so that a
// center started on another member's directory (or another cluster's)
// exits with a clear error instead of joining under a false name.
type marker struct {
	Name    string `json:"name"`
	Token   string `json:"cluster_token"`
	Cluster string `json:"cluster_id"`
}

const markerFile = "shmreg-member.json"

func checkMarker(o Options) error {
	b, err := os.ReadFile(filepath.Join(o.DataDir, markerFile))
	if errors.Is(err, os.ErrNotExist) {
		if memberExists(o.DataDir) {
			return fmt.Errorf("cluster: %s holds an etcd member that shmreg did not create (no %s); refusing to guess whose it is", o.DataDir, markerFile)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("cluster: %s: %w", filepath.Join(o.DataDir, markerFile), err)
	}
	if m.Name != o.Name || m.Token != o.ClusterToken {
		return fmt.Errorf("cluster: %s holds member %q of cluster %s (token %q), not %q (token %q): wrong --data or --name", o.DataDir, m.Name, m.Cluster, m.Token, o.Name, o.ClusterToken)
	}
	return nil
}

func writeMarker(o Options, clusterID uint64) error {
	b, _ := json.Marshal(marker{Name: o.Name, Token: o.ClusterToken, Cluster: fmt.Sprintf("etcd-%016x", clusterID)})
	if err := os.WriteFile(filepath.Join(o.DataDir, markerFile), b, 0o600); err != nil {
		return fmt.Errorf("cluster: write %s: %w", markerFile, err)
	}
	return nil
}

// addLearner asks the existing cluster (o.Join) to add this center as a
// learner, and returns the initial cluster to start it with.
func addLearner(ctx context.Context, o Options) (string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: o.Join, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", fmt.Errorf("cluster: dial the cluster to join (%s): %w", strings.Join(o.Join, ","), err)
	}
	defer cli.Close()
	// A cluster whose members have not all been connected for a few
	// seconds refuses new members ("unhealthy cluster"): try for a while.
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var resp *clientv3.MemberAddResponse
	for {
		resp, err = cli.MemberAddAsLearner(actx, []string{o.PeerURL})
		if err == nil {
			break
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) || actx.Err() != nil {
			return "", fmt.Errorf("cluster: add this center as a listener through %s: %w", strings.Join(o.Join, ","), err)
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-actx.Done():
		}
	}
	var parts []string
	for _, m := range resp.Members {
		name := m.Name
		if m.ID == resp.Member.ID {
			name = o.Name
		}
		if name == "" {
			continue // added but not started yet
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ","), nil
}

// close stops the member.
func (m *member) close() {
	m.e.Close()
}

// hasLeader reports whether the member knows a raft leader: without one,
// writes through it cannot commit.
func (m *member) hasLeader() bool { return m.e.Server.Leader() != 0 }

// isLearner reports whether the member is (still) a learner.
func (m *member) isLearner() bool { return m.e.Server.IsLearner() }

var errNoLeader = errors.New("this center's etcd member has no raft leader (it is cut off from the majority)")

// endpoints are the client URLs the center's etcd client uses: its own
// member's, so that a member cut off from the majority refuses writes at
// once; a learner serves neither writes nor watches, so a listener uses
// the voters' until it is promoted.
func (m *member) endpoints(own string) []string {
	if !m.isLearner() {
		return []string{own}
	}
	var out []string
	for _, mm := range m.e.Server.Cluster().Members() {
		if !mm.IsLearner {
			out = append(out, mm.ClientURLs...)
		}
	}
	return out
}

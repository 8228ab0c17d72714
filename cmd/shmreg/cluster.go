package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/cluster"
)

// clusterFlags are the flags of `shmreg center --cluster`.
type clusterFlags struct {
	on             *bool
	name           *string
	raftListen     *string
	etcdClient     *string
	initialCluster *string
	clusterToken   *string
	listener       *bool
	join           *string
	etcd           *string
	leaseTTL       *time.Duration
	promoteAfter   *time.Duration
	noPromote      *bool
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	return &clusterFlags{
		on:             fs.Bool("cluster", false, "run as a center of a raft cluster on etcd instead of the mirrored pair (see docs/CLUSTER.md)"),
		name:           fs.String("name", "", "cluster: this center's name (its etcd member name), unique in the cluster"),
		raftListen:     fs.String("raft-listen", "", "cluster: the embedded etcd member's raft URL, e.g. http://10.0.0.1:2380"),
		etcdClient:     fs.String("etcd-client", "", "cluster: the embedded member's etcd client URL (default: 127.0.0.1, the port after --raft-listen's)"),
		initialCluster: fs.String("initial-cluster", "", "cluster: the founding voters, name=raftURL,... (first start of a voter)"),
		clusterToken:   fs.String("cluster-token", "shmreg", "cluster: tells this cluster from others at bootstrap"),
		listener:       fs.Bool("listener", false, "cluster: join as a listener (an etcd learner, promoted when a voter is lost)"),
		join:           fs.String("join", "", "cluster: etcd client URLs of the cluster a listener joins (its first start)"),
		etcd:           fs.String("etcd", "", "cluster: client URLs of an etcd cluster you run, instead of an embedded member"),
		leaseTTL:       fs.Duration("lease-ttl", 10*time.Second, "cluster: instances registered here go this long after this center dies"),
		promoteAfter:   fs.Duration("promote-after", 10*time.Second, "cluster: how long a voter must be unreachable before a listener replaces it"),
		noPromote:      fs.Bool("no-promote", false, "cluster: never promote listeners (an operator replaces lost voters)"),
	}
}

// check refuses cluster flags without --cluster, and pair flags with it.
func (f *clusterFlags) check(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	clusterOnly := []string{"name", "raft-listen", "etcd-client", "initial-cluster", "cluster-token", "listener", "join", "etcd", "lease-ttl", "promote-after", "no-promote"}
	pairOnly := []string{"peer", "peer-tls-ca", "peer-tls-cert", "peer-tls-key", "insecure-peers", "max-clock-ahead", "tombstone-retention"}
	if !*f.on {
		for _, n := range clusterOnly {
			if set[n] {
				return usageErrorf("--%s needs --cluster", n)
			}
		}
		return nil
	}
	for _, n := range pairOnly {
		if set[n] {
			return usageErrorf("--%s is for the mirrored pair, not --cluster", n)
		}
	}
	if *f.name == "" {
		return usageErrorf("--cluster needs --name")
	}
	if *f.etcd != "" {
		for _, n := range []string{"raft-listen", "etcd-client", "initial-cluster", "listener", "join", "data"} {
			if set[n] {
				return usageErrorf("--%s is for an embedded member; --etcd uses yours", n)
			}
		}
		return nil
	}
	if !set["data"] {
		return usageErrorf("--cluster needs --data (the etcd member's WAL and snapshots) or --etcd")
	}
	if *f.raftListen == "" {
		return usageErrorf("--cluster needs --raft-listen (or --etcd)")
	}
	if *f.listener && *f.initialCluster != "" {
		return usageErrorf("--listener learns the cluster's members from --join; drop --initial-cluster")
	}
	return nil
}

// newClusterCenter makes a cluster center with the front's options of the
// pair's flags.
func newClusterCenter(ctx context.Context, f *clusterFlags, front center.Options, data, logLevel string) (*cluster.Center, error) {
	o := cluster.Options{
		Options:        front,
		Name:           *f.name,
		Endpoints:      splitList(*f.etcd),
		DataDir:        data,
		PeerURL:        *f.raftListen,
		ClientURL:      *f.etcdClient,
		InitialCluster: *f.initialCluster,
		ClusterToken:   *f.clusterToken,
		Listener:       *f.listener,
		Join:           splitList(*f.join),
		LeaseTTL:       *f.leaseTTL,
		PromoteAfter:   *f.promoteAfter,
		NoPromote:      *f.noPromote,
	}
	if logLevel == "debug" {
		o.EtcdLogLevel = "debug"
	}
	return cluster.New(ctx, o)
}

func runCluster(args []string) error {
	fs := newFlags("cluster", "status [flags]", "Show a center cluster's members: role, leader, raft index, health.")
	endpoints := fs.String("etcd", "http://127.0.0.1:2381", "etcd client URLs of any members (a center's --etcd-client)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 2*time.Second, "bound on each member's answer")
	if len(args) > 0 && args[0] == "status" {
		args = args[1:]
	} else if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		return usageErrorf("usage: shmreg cluster status [flags] (the only subcommand)")
	}
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: splitList(*endpoints), DialTimeout: *timeout, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4**timeout)
	defer cancel()
	st, err := cluster.ReadStatus(ctx, cli, *timeout)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Printf("cluster %s, leader %s\n", st.ClusterID, orNone(st.Leader))
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tLEADER\tHEALTHY\tRAFT TERM\tRAFT INDEX\tAPPLIED\tPEER URL\tERROR")
	for _, m := range st.Members {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%d\t%d\t%s\t%s\n", orNone(m.Name), m.Role, m.Leader, m.Healthy, m.RaftTerm, m.RaftIndex, m.Applied, strings.Join(m.PeerURLs, ","), m.Err)
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

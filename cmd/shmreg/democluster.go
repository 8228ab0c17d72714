package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/cluster"
)

// demoCluster runs three voters and a listener as `shmreg center --cluster`
// child processes on loopback, kills the leader and then a voter, and
// narrates the election, the promotion and a subscriber carrying on.
type demoCluster struct {
	out   io.Writer
	dir   string
	token string
	nodes []*demoNode
}

type demoNode struct {
	name, raft, etcd, addr string
	listener               bool
	cmd                    *exec.Cmd
}

func runDemoCluster(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "shmreg-democluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d := &demoCluster{out: out, dir: dir, token: rand.Text()}
	defer d.close()
	err = d.run(ctx)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(out, "\nstopped; cleaning up.")
		return nil
	}
	return err
}

func demoPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (d *demoCluster) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demoCluster) start(ctx context.Context, n *demoNode, initial, join string) error {
	args := []string{"center", "--cluster", "--name", n.name, "--raft-listen", n.raft, "--etcd-client", n.etcd,
		"--data", filepath.Join(d.dir, n.name), "--listen", n.addr, "--token-file", filepath.Join(d.dir, "token"),
		"--promote-after", "3s", "--lease-ttl", "5s", "--log-level", "warn"}
	if n.listener {
		args = append(args, "--listener", "--join", join)
	} else {
		args = append(args, "--initial-cluster", initial)
	}
	n.cmd = exec.CommandContext(ctx, os.Args[0], args...)
	logf, err := os.Create(filepath.Join(d.dir, n.name+".log"))
	if err != nil {
		return err
	}
	n.cmd.Stderr = logf
	return n.cmd.Start()
}

func (d *demoCluster) close() {
	for _, n := range d.nodes {
		if n.cmd != nil && n.cmd.Process != nil && n.cmd.ProcessState == nil {
			n.cmd.Process.Signal(syscall.SIGTERM)
			n.cmd.Wait()
		}
	}
}

func (d *demoCluster) status(ctx context.Context, cli *clientv3.Client) cluster.Status {
	st, err := cluster.ReadStatus(ctx, cli, time.Second)
	if err != nil {
		d.say("  (status: %v)", err)
		return st
	}
	for _, m := range st.Members {
		lead := ""
		if m.Leader {
			lead = "  <- leader"
		}
		health := "healthy"
		if !m.Healthy {
			health = "DOWN"
		}
		d.say("  %-3s %-8s %-7s raft index %-6d%s", m.Name, m.Role, health, m.RaftIndex, lead)
	}
	return st
}

func (d *demoCluster) run(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(d.dir, "token"), []byte(d.token), 0o600); err != nil {
		return err
	}
	var parts, addrs, etcds []string
	for i, name := range []string{"c1", "c2", "c3", "l1"} {
		var ports [3]int
		for j := range ports {
			p, err := demoPort()
			if err != nil {
				return err
			}
			ports[j] = p
		}
		n := &demoNode{name: name, raft: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), etcd: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
			addr: fmt.Sprintf("127.0.0.1:%d", ports[2]), listener: i == 3}
		d.nodes = append(d.nodes, n)
		addrs = append(addrs, n.addr)
		if !n.listener {
			parts = append(parts, n.name+"="+n.raft)
			etcds = append(etcds, n.etcd)
		}
	}
	d.say("1. Three voters (c1, c2, c3) and a listener (l1): `shmreg center --cluster` processes, each embedding an etcd member.")
	for _, n := range d.nodes[:3] {
		if err := d.start(ctx, n, strings.Join(parts, ","), ""); err != nil {
			return err
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: etcds, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	if err := d.waitFor(ctx, 30*time.Second, func(st cluster.Status) bool { return st.Leader != "" }, cli); err != nil {
		return fmt.Errorf("the voters did not elect a leader: %w (logs in %s)", err, d.dir)
	}
	if err := d.start(ctx, d.nodes[3], "", etcds[0]); err != nil {
		return err
	}
	if err := d.waitFor(ctx, 60*time.Second, func(st cluster.Status) bool { return len(st.Members) == 4 && st.Members[3].Healthy }, cli); err != nil {
		return fmt.Errorf("the listener did not join: %w", err)
	}
	st := d.status(ctx, cli)

	// Clients: a writer and a subscriber, the leader first in their lists.
	var leader *demoNode
	order := []string{}
	for _, n := range d.nodes {
		if n.name == st.Leader {
			leader = n
			order = append([]string{n.addr}, order...)
		} else {
			order = append(order, n.addr)
		}
	}
	if leader == nil {
		return errors.New("no leader")
	}
	w, err := registry.NewClient(registry.ClientOptions{Addrs: order, Token: d.token, Role: registry.RoleAdmin, Name: "demo-writer"})
	if err != nil {
		return err
	}
	defer w.Close()
	sc, err := registry.NewClient(registry.ClientOptions{Addrs: order, Role: registry.RoleAgent, Name: "demo-agent"})
	if err != nil {
		return err
	}
	defer sc.Close()
	sub, err := sc.Subscribe(ctx, []string{"cfg/"})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	state := map[string]string{}
	batches, snapshots := 0, 0
	go func() {
		for {
			b, err := sub.Next(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			batches++
			if b.Snapshot {
				snapshots++
				clear(state)
			}
			for _, r := range b.Records {
				if r.Deleted {
					delete(state, r.Key)
				} else {
					state[r.Key] = string(r.Value)
				}
			}
			mu.Unlock()
		}
	}()
	var acks []time.Time
	var ackMu sync.Mutex
	wctx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	go func() {
		for i := 0; wctx.Err() == nil; i++ {
			c, cancel := context.WithTimeout(wctx, 3*time.Second)
			_, err := w.Put(c, fmt.Sprintf("cfg/tick/%d", i%20), []byte(fmt.Sprint(i)))
			cancel()
			if err == nil {
				ackMu.Lock()
				acks = append(acks, time.Now())
				ackMu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	d.say("\n2. A writer (the SDK) puts cfg/tick/* every 50ms; a subscriber follows cfg/. Both start on the leader, %s.", leader.name)
	time.Sleep(2 * time.Second)

	d.say("\n3. SIGKILL the leader %s.", leader.name)
	killed := time.Now()
	leader.cmd.Process.Signal(syscall.SIGKILL)
	leader.cmd.Wait()
	for {
		ackMu.Lock()
		ok := len(acks) > 0 && acks[len(acks)-1].After(killed)
		ackMu.Unlock()
		if ok || time.Since(killed) > 30*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.say("   writes acknowledged again %v after the kill; the new leader:", time.Since(killed).Round(10*time.Millisecond))
	d.waitFor(ctx, 10*time.Second, func(st cluster.Status) bool { return st.Leader != "" && st.Leader != leader.name }, cli)
	d.status(ctx, cli)

	d.say("\n4. The supervisor sees %s unreachable; after --promote-after (3s) it promotes the listener l1 and removes %s.", leader.name, leader.name)
	err = d.waitFor(ctx, 30*time.Second, func(st cluster.Status) bool {
		voters := 0
		for _, m := range st.Members {
			if m.Role == "voter" && m.Healthy {
				voters++
			}
		}
		return voters == 3 && len(st.Members) == 3
	}, cli)
	if err != nil {
		return fmt.Errorf("no promotion: %w (logs in %s)", err, d.dir)
	}
	d.say("   three healthy voters again, %v after the kill:", time.Since(killed).Round(10*time.Millisecond))
	st = d.status(ctx, cli)

	var victim *demoNode
	for _, n := range d.nodes {
		if n != leader && n.name != st.Leader && !n.listener {
			victim = n
			break
		}
	}
	if victim != nil {
		d.say("\n5. SIGKILL the voter %s (no listener is left to promote: two voters of three keep the majority).", victim.name)
		k2 := time.Now()
		victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.cmd.Wait()
		time.Sleep(2 * time.Second)
		ackMu.Lock()
		n := 0
		for _, a := range acks {
			if a.After(k2) {
				n++
			}
		}
		ackMu.Unlock()
		d.say("   %d writes acknowledged in the 2s after it.", n)
		d.status(ctx, cli)
	}
	stopWriter()
	time.Sleep(500 * time.Millisecond)

	d.say("\n6. The subscriber carried on, failing over by revision:")
	var survivor *demoNode
	for _, n := range d.nodes {
		if n.cmd.ProcessState == nil {
			survivor = n
			break
		}
	}
	conn, err := registry.Dial(ctx, survivor.addr, registry.DialOptions{})
	if err != nil {
		return err
	}
	defer conn.Close()
	var want map[string]string
	for range 50 {
		recs, err := conn.List(ctx, "cfg/")
		if err != nil {
			return err
		}
		want = map[string]string{}
		for _, r := range recs {
			want[r.Key] = string(r.Value)
		}
		mu.Lock()
		same := fmt.Sprint(state) == fmt.Sprint(want)
		mu.Unlock()
		if same {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	d.say("   %d batches, %d snapshot (the first); it holds %d keys, the same as %s holds: %v.", batches, snapshots, len(state), survivor.name, fmt.Sprint(state) == fmt.Sprint(want))
	mu.Unlock()
	d.say("\nThe centers' logs are in %s while the demo runs.", d.dir)
	return nil
}

// waitFor polls the cluster's status until ok, or limit.
func (d *demoCluster) waitFor(ctx context.Context, limit time.Duration, ok func(cluster.Status) bool, cli *clientv3.Client) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := cluster.ReadStatus(ctx, cli, 500*time.Millisecond)
		if err == nil && ok(st) {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("timed out")
			}
			return err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// demo runs the whole system in one process on loopback and narrates it.
type demo struct {
	out     io.Writer
	dir     string
	measure time.Duration
	step    int
	centers [2]*pair.Center
	addrs   [2]string
	agent   *agent.Agent
	region  string
	reader  *shm.Reader
	client  *registry.Client
	// token is made up for this run: the centers are as closed to
	// strangers as in production, even on loopback.
	token string
}

const demoSteps = 6

func runDemo(args []string) error {
	fs := newFlags("demo", "", "Run a mirrored pair of centers, an agent and a reader process on loopback, in a\ntemporary directory, and show the system at work: registration, shared-memory\nlookups, failover, and lookup speed from shared memory against TCP.")
	duration := fs.Duration("duration", 0, "stop after this long in total, even mid-script (0: no bound)")
	keep := fs.Bool("keep", false, "after the script, keep the system up (until Ctrl-C or --duration) to explore it")
	measure := fs.Duration("measure", time.Second, "how long each lookup-rate measurement runs")
	clusterDemo := fs.Bool("cluster", false, "show a raft cluster instead: three voters and a listener, the leader killed, then a voter (see docs/CLUSTER.md)")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	ctx, stop := signalContext(*duration)
	defer stop()
	if *clusterDemo {
		return runDemoCluster(ctx, os.Stdout)
	}
	dir, err := os.MkdirTemp("", "shmreg-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d := &demo{out: os.Stdout, dir: dir, measure: *measure, token: rand.Text()}
	defer d.close()
	err = d.run(ctx)
	if err != nil && ctx.Err() != nil {
		// Whatever failed, it failed because the demo was told to stop.
		fmt.Fprintln(d.out, "\nstopped; cleaning up.")
		return nil
	}
	if err != nil {
		return err
	}
	if *keep && ctx.Err() == nil {
		fmt.Fprintf(d.out, "\nThe system stays up (Ctrl-C to stop). In another terminal:\n")
		fmt.Fprintf(d.out, "  shmreg ls --region %s svc/\n  shmreg watch --region %s svc/\n", d.region, d.region)
		<-ctx.Done()
		fmt.Fprintln(d.out, "\nstopped; cleaning up.")
	}
	return nil
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.out, format+"\n", a...) }

// stepf announces the next step, or returns ctx's error if the demo must stop.
func (d *demo) stepf(ctx context.Context, format string, a ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s\n", d.step, demoSteps, fmt.Sprintf(format, a...))
	return nil
}

func (d *demo) run(ctx context.Context) error {
	d.say("shmreg demo: service lookups served from shared memory")
	d.say("working directory %s (removed on exit)", d.dir)

	if err := d.stepf(ctx, "Starting a mirrored pair of registry centers on loopback"); err != nil {
		return err
	}
	if err := d.startCenters(ctx); err != nil {
		return err
	}
	d.say("  center A  %s  id %s", d.addrs[0], d.centers[0].ID())
	d.say("  center B  %s  id %s", d.addrs[1], d.centers[1].ID())

	if err := d.stepf(ctx, "Starting the host agent (subscribed to svc/ and cfg/)"); err != nil {
		return err
	}
	if err := d.startAgent(ctx); err != nil {
		return err
	}
	d.say("  region    %s", d.region)
	d.say("  following %s", d.agent.Status().CenterAddr)

	if err := d.stepf(ctx, "Registering sample services through the SDK; each appears in shared memory"); err != nil {
		return err
	}
	if err := d.register(ctx); err != nil {
		return err
	}
	d.showRegion()

	if err := d.stepf(ctx, "Killing the center the agent follows"); err != nil {
		return err
	}
	if err := d.failover(ctx); err != nil {
		return err
	}

	if err := d.stepf(ctx, "A separate reader process looks services up in shared memory"); err != nil {
		return err
	}
	if err := d.spawnReader(ctx); err != nil {
		return err
	}

	if err := d.stepf(ctx, "Lookup rate: shared memory against TCP to a center (%v each)", d.measure); err != nil {
		return err
	}
	if err := d.compare(ctx); err != nil {
		return err
	}
	d.say("\nDone. Every lookup above came from shared memory except the TCP column.")
	return nil
}

// reserveAddr picks a free loopback port (each center must know its peer's
// address before either starts).
func reserveAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

func (d *demo) startCenters(ctx context.Context) error {
	for i := range d.addrs {
		addr, err := reserveAddr()
		if err != nil {
			return err
		}
		d.addrs[i] = addr
	}
	for i := range d.centers {
		c, err := pair.New(pair.Options{Options: center.Options{Listen: d.addrs[i], Token: d.token}, Peer: d.addrs[1-i], DataDir: filepath.Join(d.dir, fmt.Sprintf("center-%c", 'a'+i))})
		if err != nil {
			return err
		}
		if err := c.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		d.centers[i] = c
	}
	return nil
}

func (d *demo) startAgent(ctx context.Context) error {
	a, err := agent.New(agent.Options{
		Centers:  d.addrs[:],
		Region:   filepath.Join(d.dir, "region"),
		Prefixes: []string{"svc/", "cfg/"},
		Control:  filepath.Join(d.dir, "agent.sock"),
		Token:    d.token,
	})
	if err != nil {
		return err
	}
	if err := a.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	d.agent = a
	d.region = a.Status().Region
	for !a.Status().Connected {
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return err
		}
	}
	d.reader, err = shm.Open(d.region, shm.Options{})
	if err != nil {
		return err
	}
	d.client, err = registry.NewClient(registry.ClientOptions{Addrs: d.addrs[:], Name: "demo", Token: d.token})
	return err
}

// sampleServices are what the demo registers.
var sampleServices = []registry.Instance{
	{Service: "web", ID: "web-1", Address: "10.0.0.11", Port: 8080, Metadata: map[string]string{"zone": "a"}},
	{Service: "web", ID: "web-2", Address: "10.0.0.12", Port: 8080, Metadata: map[string]string{"zone": "b"}},
	{Service: "web", ID: "web-3", Address: "10.0.0.13", Port: 8080, Weight: 2, Metadata: map[string]string{"zone": "c"}},
	{Service: "api", ID: "api-1", Address: "10.0.1.21", Port: 9090},
	{Service: "api", ID: "api-2", Address: "10.0.1.22", Port: 9090},
	{Service: "db", ID: "db-primary", Address: "10.0.2.31", Port: 5432, Metadata: map[string]string{"role": "primary"}},
}

// register registers the samples and times each one's arrival in the region.
func (d *demo) register(ctx context.Context) error {
	for _, in := range sampleServices {
		start := time.Now()
		if err := d.client.Register(context.WithoutCancel(ctx), in, registry.RegisterOptions{}); err != nil {
			return fmt.Errorf("register %s: %w", in.Key(), err)
		}
		acked := time.Since(start)
		if err := d.waitFor(ctx, in.Key()); err != nil {
			return err
		}
		d.say("  %-22s acknowledged in %-9s in shared memory after %s", in.Key(), round(acked), round(time.Since(start)))
	}
	start := time.Now()
	if _, err := d.client.Put(ctx, "cfg/demo/greeting", []byte("hello from the center")); err != nil {
		return err
	}
	if err := d.waitFor(ctx, "cfg/demo/greeting"); err != nil {
		return err
	}
	d.say("  %-22s (a config value)          in shared memory after %s", "cfg/demo/greeting", round(time.Since(start)))
	return nil
}

// waitFor sleeps on the region's change notification until key is there.
func (d *demo) waitFor(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		seq := d.reader.Seq()
		if _, err := d.reader.Get([]byte(key)); err == nil {
			return nil
		}
		if _, err := d.reader.Wait(ctx, seq); err != nil {
			return fmt.Errorf("waiting for %s in the region: %w", key, err)
		}
	}
}

func (d *demo) showRegion() {
	d.say("\n  The region now holds (read with no socket, as 'shmreg ls' does):")
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "    SERVICE\tID\tADDRESS\tWEIGHT\tMETADATA")
	d.reader.Scan([]byte(registry.InstancePrefix), func(k, v []byte) bool {
		in, err := registry.DecodeInstance(v)
		if err != nil {
			return true
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s:%d\t%d\t%s\n", in.Service, in.ID, in.Address, in.Port, in.Weight, formatMeta(in.Metadata))
		return true
	})
	tw.Flush()
}

func formatMeta(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

// failover shuts down the followed center and times the agent's move.
func (d *demo) failover(ctx context.Context) error {
	st := d.agent.Status()
	victim, survivor := 0, 1
	if st.Center == d.centers[1].ID() {
		victim, survivor = 1, 0
	}
	// A mirrored pair: wait until the survivor holds everything the victim
	// does (replication is asynchronous), as it would in steady state.
	for len(d.centers[survivor].List("")) != len(d.centers[victim].List("")) || !d.centers[survivor].PeerConnected() {
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return err
		}
	}
	d.say("  both centers hold the %d records; the agent follows center %c: shutting it down ...", len(d.centers[victim].List("")), 'A'+victim)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := d.centers[victim].Shutdown(sctx)
	cancel()
	if err != nil {
		return err
	}
	d.centers[victim] = nil
	for d.agent.Status().Center != d.centers[survivor].ID() {
		if err := sleepCtx(ctx, 200*time.Microsecond); err != nil {
			return err
		}
	}
	took := time.Since(start)
	rs := d.agent.Status().LastResync
	d.say("  the agent failed over to center %c in %s", 'A'+survivor, round(took))
	d.say("  resync by diff: %d entries in the snapshot, %d unchanged (not touched), %d written, %d deleted", rs.Snapshot, rs.Unchanged, rs.Written, rs.Deleted)
	in := registry.Instance{Service: "web", ID: "web-4", Address: "10.0.0.14", Port: 8080}
	start = time.Now()
	if err := d.client.Register(context.WithoutCancel(ctx), in, registry.RegisterOptions{}); err != nil {
		return err
	}
	if err := d.waitFor(ctx, in.Key()); err != nil {
		return err
	}
	d.say("  registered %s through center %c: in shared memory after %s", in.Key(), 'A'+survivor, round(time.Since(start)))
	return nil
}

// spawnReader runs this binary again as a plain reader process.
func (d *demo) spawnReader(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, os.Args[0], "demo-reader", "--region", d.region, "--service", "web")
	cmd.Stdout, cmd.Stderr = d.out, d.out
	return cmd.Run()
}

// compare measures lookups per second from shared memory and over TCP.
func (d *demo) compare(ctx context.Context) error {
	key := []byte(registry.InstanceKey("web", "web-1"))
	// A loop of lookups holds a Session: its own reader slot.
	sess, err := d.reader.Session()
	if err != nil {
		return err
	}
	defer sess.Close()
	var shmN int
	deadline := time.Now().Add(d.measure)
	start := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for range 1000 {
			if err := sess.View(key, func([]byte) error { return nil }); err != nil {
				return err
			}
		}
		shmN += 1000
	}
	shmRate := float64(shmN) / time.Since(start).Seconds()

	var addr string
	for i, c := range d.centers {
		if c != nil {
			addr = d.addrs[i]
		}
	}
	conn, err := registry.Dial(ctx, addr, registry.DialOptions{Role: registry.RoleAdmin, Name: "demo", Token: d.token})
	if err != nil {
		return err
	}
	defer conn.Close()
	var tcpN int
	deadline = time.Now().Add(d.measure)
	start = time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := conn.Get(ctx, string(key)); err != nil {
			return err
		}
		tcpN++
	}
	tcpRate := float64(tcpN) / time.Since(start).Seconds()

	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  path\tlookups/s\tper lookup\t")
	fmt.Fprintf(tw, "  shared memory (Session.View)\t%.0f\t%s\t\n", shmRate, perOp(shmRate))
	fmt.Fprintf(tw, "  TCP to a center (Conn.Get)\t%.0f\t%s\t\n", tcpRate, perOp(tcpRate))
	tw.Flush()
	d.say("  shared memory is %.0fx faster here (one goroutine each, loopback, this machine)", shmRate/tcpRate)
	return nil
}

func perOp(rate float64) string {
	if rate <= 0 {
		return "-"
	}
	return round(time.Duration(float64(time.Second) / rate)).String()
}

// round keeps three significant figures of a duration.
func round(d time.Duration) time.Duration {
	switch {
	case d < time.Microsecond:
		return d
	case d < time.Millisecond:
		return d.Round(10 * time.Nanosecond)
	case d < time.Second:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(10 * time.Millisecond)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *demo) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d.client != nil {
		d.client.Close()
	}
	if d.reader != nil {
		d.reader.Close()
	}
	if d.agent != nil {
		d.agent.Shutdown(ctx)
	}
	for _, c := range d.centers {
		if c != nil {
			c.Shutdown(ctx)
		}
	}
}

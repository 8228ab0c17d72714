// Command orders-client is a small service that registers itself with the
// registry centers through the SDK and calls another service, "orders",
// through a picker served from the host's shared-memory region.
//
// It needs a running pair of centers and an agent on the host (see
// README.md in this folder):
//
//	orders-client -centers 127.0.0.1:7701,127.0.0.1:7702 -region registry -listen 127.0.0.1:9000
//
// Every second it picks an "orders" instance by consistent hashing on a
// user id and sends it GET /orders?user=<id>.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/discovery"
)

func main() {
	if err := run(); err != nil {
		slog.Error("orders-client", "err", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("orders-client", flag.ContinueOnError)
	centers := fs.String("centers", "127.0.0.1:7701,127.0.0.1:7702", "comma-separated center addresses")
	region := fs.String("region", "registry", "region name or path the local agent writes")
	listen := fs.String("listen", "127.0.0.1:9000", "address this service serves on")
	target := fs.String("call", "orders", "service to call")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Serve something, so that the registration points at a live port.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	// Register through the SDK: the client heartbeats in the background and
	// fails over between the centers. Close deregisters what the client
	// still holds before it returns (bounded by DeregisterTimeout), so a
	// clean shutdown leaves no instance behind for others to call.
	client, err := registry.NewClient(registry.ClientOptions{Addrs: strings.Split(*centers, ","), Name: "orders-client"})
	if err != nil {
		return err
	}
	defer func() {
		if err := client.Close(); err != nil {
			slog.Warn("deregister at shutdown (the instance expires after its TTL)", "err", err)
		}
	}()
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	hostname, _ := os.Hostname()
	self := registry.Instance{Service: "orders-client", ID: hostname + "-" + portStr, Address: host, Port: port,
		Metadata: map[string]string{"version": "1"}}
	if err := client.Register(ctx, self, registry.RegisterOptions{}); err != nil {
		return fmt.Errorf("register: %w", err)
	}

	// Look the callee up in shared memory: no network on this path.
	cat, err := discovery.Open(*region, discovery.Options{})
	if err != nil {
		return fmt.Errorf("open region (is the agent running?): %w", err)
	}
	defer cat.Close()
	picker, err := cat.Picker(*target, discovery.PickerOptions{Strategy: discovery.ConsistentHash})
	if err != nil {
		return err
	}
	httpc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		user := "user-" + strconv.Itoa(n%10)
		in, err := picker.Pick(user)
		if errors.Is(err, discovery.ErrNoInstances) {
			slog.Warn("no instance of the callee yet", "service", *target)
			continue
		} else if err != nil {
			return err
		}
		url := "http://" + net.JoinHostPort(in.Address, strconv.Itoa(in.Port)) + "/orders?user=" + user
		resp, err := httpc.Get(url)
		if err != nil {
			slog.Warn("call failed", "instance", in.ID, "err", err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		slog.Info("called", "instance", in.ID, "status", resp.StatusCode, "body", strings.TrimSpace(string(body)))
	}
}

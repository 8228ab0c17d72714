package grpcresolver

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/balancer/ringhash" // registers ring_hash_experimental
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/discovery"
	"github.com/shmreg/shmreg/shm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer runs a gRPC server with the health service on a loopback
// port and returns its port.
func startServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().(*net.TCPAddr).Port
}

func register(t *testing.T, w *shm.Writer, id string, port int) {
	t.Helper()
	b, err := registry.EncodeInstance(registry.Instance{Service: "orders", ID: id, Address: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte(registry.InstanceKey("orders", id)), b); err != nil {
		t.Fatal(err)
	}
}

// callPorts makes n health checks and counts the server port each hit.
func callPorts(t *testing.T, conn *grpc.ClientConn, n int) map[int]int {
	t.Helper()
	return callPortsKeyed(t, conn, n, func(i int) string { return "user-" + strconv.Itoa(i) })
}

// callPortsKeyed is callPorts with the x-user header of call i set to key(i).
func callPortsKeyed(t *testing.T, conn *grpc.ClientConn, n int, key func(int) string) map[int]int {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	hits := map[int]int{}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-user", key(i))
		var p peer.Peer
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		hits[p.Addr.(*net.TCPAddr).Port]++
	}
	return hits
}

func TestResolverFollowsTheRegion(t *testing.T) {
	for _, tc := range []struct {
		name, config string
	}{
		{"round_robin", `{"loadBalancingConfig":[{"round_robin":{}}]}`},
		{"ring_hash", `{"loadBalancingConfig":[{"ring_hash_experimental":{"requestHashHeader":"x-user"}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			portA, portB := startServer(t), startServer(t)
			path := filepath.Join(t.TempDir(), "region")
			w, err := shm.OpenWriter(path, shm.Options{Size: 4 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			register(t, w, "a", portA)
			register(t, w, "b", portB)
			cat, err := discovery.Open(path, discovery.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer cat.Close()
			conn, err := grpc.NewClient(Scheme+":///orders",
				grpc.WithResolvers(NewBuilder(cat, Options{ServiceConfig: tc.config})),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			// Both servers take calls (round_robin alternates; ring_hash
			// spreads the 20 user keys over both).
			deadline := time.Now().Add(10 * time.Second)
			for hits := callPorts(t, conn, 20); hits[portA] == 0 || hits[portB] == 0; hits = callPorts(t, conn, 20) {
				if time.Now().After(deadline) {
					t.Fatalf("calls never reached both servers: %v", hits)
				}
			}
			if tc.name == "ring_hash" {
				// One request key sticks to one server.
				if hits := callPortsKeyed(t, conn, 10, func(int) string { return "user-7" }); len(hits) != 1 {
					t.Fatalf("one key reached several servers: %v", hits)
				}
			}
			// One instance leaves the region: calls move to the other.
			if _, err := w.Delete([]byte(registry.InstanceKey("orders", "a"))); err != nil {
				t.Fatal(err)
			}
			for hits := callPorts(t, conn, 20); hits[portA] != 0; hits = callPorts(t, conn, 20) {
				if time.Now().After(deadline) {
					t.Fatalf("calls still reach the removed instance: %v", hits)
				}
			}
			if hits := callPorts(t, conn, 20); hits[portB] != 20 {
				t.Fatalf("after removal: %v", hits)
			}
			// And come back when it returns.
			register(t, w, "a", portA)
			for hits := callPorts(t, conn, 20); hits[portA] == 0; hits = callPorts(t, conn, 20) {
				if time.Now().After(deadline) {
					t.Fatalf("calls never returned to a: %v", hits)
				}
			}
		})
	}
}

func TestBuildRejectsBadTargets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	w, err := shm.OpenWriter(path, shm.Options{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cat, err := discovery.Open(path, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cat.Close()
	for _, target := range []string{"shmreg:///", "shmreg:///a/b"} {
		conn, err := grpc.NewClient(target, grpc.WithResolvers(NewBuilder(cat, Options{})),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			continue // refused up front is fine too
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		conn.Close()
		if err == nil {
			t.Fatalf("%s: call succeeded", target)
		}
	}
}

package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"

	"go.uber.org/goleak"
)

// workerEnv selects the reader-process role of the test binary: its value
// is the JSON-encoded arguments of ReadWorker.
const workerEnv = "SHMREG_BENCH_TEST_WORKER"

// agentEnv selects the agent-process role of the test binary: its value is
// the JSON-encoded flags that `shmreg agent` would get (see runTestAgent).
const agentEnv = "SHMREG_BENCH_TEST_AGENT"

// centerEnv selects the center-process role: the JSON-encoded flags that
// `shmreg center` would get (see runTestCenter).
const centerEnv = "SHMREG_BENCH_TEST_CENTER"

func TestMain(m *testing.M) {
	if v := os.Getenv(workerEnv); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := ReadWorker(context.Background(), args, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "read worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(agentEnv); v != "" {
		if err := runTestAgent(v); err != nil {
			fmt.Fprintln(os.Stderr, "agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if v := os.Getenv(centerEnv); v != "" {
		if err := runTestCenter(v); err != nil {
			fmt.Fprintln(os.Stderr, "center:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// go-redis and grpc (etcd's client) keep package-level workers.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc.(*addrConn).resetTransportAndUnlock"),
	)
}

// testWorker re-executes the test binary as a reader process.
func testWorker(args []string) *exec.Cmd {
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	return cmd
}

// testAgent re-executes the test binary as an agent process, standing in
// for `shmreg agent` (which this package cannot import).
func testAgent(args []string) *exec.Cmd { return testRole(agentEnv, args) }

// testCenter re-executes the test binary as a center process, standing in
// for `shmreg center`.
func testCenter(args []string) *exec.Cmd { return testRole(centerEnv, args) }

func testRole(env string, args []string) *exec.Cmd {
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+string(b))
	return cmd
}

// runTestAgent runs an agent from the flags of `shmreg agent` that the
// propagate workload passes, until SIGTERM, as `shmreg agent` does.
func runTestAgent(jsonArgs string) error {
	var args []string
	if err := json.Unmarshal([]byte(jsonArgs), &args); err != nil {
		return err
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error says it all
	centers := fs.String("centers", "", "")
	region := fs.String("region", "", "")
	subscribe := fs.String("subscribe", "", "")
	size := fs.Int64("region-size", 0, "")
	fs.String("log-level", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	a, err := agent.New(agent.Options{
		Centers: strings.Split(*centers, ","), Region: *region,
		Prefixes: strings.Split(*subscribe, ","), Shm: shm.Options{Size: *size},
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return a.Run(ctx)
}

// runTestCenter runs a center from the flags of `shmreg center` that the
// propagate workload passes, until SIGTERM, as `shmreg center` does.
func runTestCenter(jsonArgs string) error {
	var args []string
	if err := json.Unmarshal([]byte(jsonArgs), &args); err != nil {
		return err
	}
	fs := flag.NewFlagSet("center", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var opts pair.Options
	fs.StringVar(&opts.Listen, "listen", "", "")
	fs.StringVar(&opts.Peer, "peer", "", "")
	fs.StringVar(&opts.DataDir, "data", "", "")
	fs.Float64Var(&opts.SelfPreservation, "self-preservation", 0, "")
	fs.String("log-level", "", "")
	fs.BoolVar(&opts.Insecure, "insecure", false, "")
	fs.IntVar(&opts.MaxConns, "max-conns", 0, "")
	fs.IntVar(&opts.MaxConnsPerAddr, "max-conns-per-addr", 0, "")
	fs.DurationVar(&opts.WriteTimeout, "write-timeout", 0, "")
	metrics := fs.String("metrics", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *metrics != "" {
		// As `shmreg center --metrics`: the center's metrics and the Go
		// runtime's, at /metrics.
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector())
		opts.Registerer = reg
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Addr: *metrics, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		ln, err := net.Listen("tcp", *metrics)
		if err != nil {
			return err
		}
		go srv.Serve(ln)
		defer srv.Close()
	}
	c, err := pair.New(opts)
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Shutdown(sctx)
}

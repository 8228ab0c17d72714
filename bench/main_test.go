package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/shm"

	"go.uber.org/goleak"
)

// workerEnv selects the reader-process role of the test binary: its value
// is the JSON-encoded arguments of ReadWorker.
const workerEnv = "SHMREG_BENCH_TEST_WORKER"

// agentEnv selects the agent-process role of the test binary: its value is
// the JSON-encoded flags that `shmreg agent` would get (see runTestAgent).
const agentEnv = "SHMREG_BENCH_TEST_AGENT"

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
func testAgent(args []string) *exec.Cmd {
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentEnv+"="+string(b))
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

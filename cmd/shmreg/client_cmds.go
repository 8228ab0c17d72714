package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// clientFlags are the connection flags shared by the SDK-based commands.
type clientFlags struct {
	centers *string
	token   tokenFlags
	tlsCA   *string
	timeout *time.Duration
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		centers: fs.String("centers", "127.0.0.1:7701,127.0.0.1:7702", "comma-separated addresses of the centers"),
		token:   addTokenFlags(fs, "token the centers require for writes"),
		tlsCA:   fs.String("tls-ca", "", "dial the centers over TLS, verifying them with this CA (PEM)"),
		timeout: fs.Duration("timeout", 5*time.Second, "time limit for the request"),
	}
}

// check returns a usage error for connection flags that cannot work: no
// center, an address without a port, a time limit that has already run
// out.
func (f clientFlags) check() error {
	if strings.TrimSpace(*f.centers) == "" {
		return usageErrorf("--centers: no address")
	}
	for _, addr := range strings.Split(*f.centers, ",") {
		if err := checkAddr(addr, false); err != nil {
			return usageErrorf("--centers %s: %v", addr, err)
		}
	}
	if *f.timeout <= 0 {
		return usageErrorf("--timeout %s: must be positive", *f.timeout)
	}
	return nil
}

// client connects to the centers. The token file, if any, is read here,
// once; a token file readable by others is not warned about (a one-shot
// command would repeat the warning on every call; the center warns).
func (f clientFlags) client(role registry.Role) (*registry.Client, error) {
	token, _, err := f.token.resolve(os.Getenv(tokenFileEnv))
	if err != nil {
		return nil, err
	}
	opts := registry.ClientOptions{Addrs: strings.Split(*f.centers, ","), Token: token, Role: role, Name: "shmreg-cli"}
	if *f.tlsCA != "" {
		pool, err := loadPool(*f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		opts.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return registry.NewClient(opts)
}

func runPut(args []string) error {
	return writeRequest{
		name: "put", args: "KEY VALUE", summary: "Write a key/value to the centers. A VALUE of - is read from standard input,\nas it is (any bytes; a trailing newline is kept).", done: "put",
		value: func(a []string) ([]byte, error) {
			if a[1] == "-" {
				return readValue(os.Stdin)
			}
			return []byte(a[1]), nil
		},
		send: func(ctx context.Context, cl *registry.Client, a []string, value []byte) (registry.Version, error) {
			return cl.Put(ctx, a[0], value)
		},
	}.run(args)
}

// readValue reads a value from r, refusing one over the limit before it
// reads the rest.
func readValue(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, registry.MaxValueLen+1))
	if err != nil {
		return nil, fmt.Errorf("read the value from standard input: %w", err)
	}
	if len(b) > registry.MaxValueLen {
		return nil, fmt.Errorf("%w: the value on standard input exceeds %d bytes", registry.ErrTooLarge, registry.MaxValueLen)
	}
	return b, nil
}

func runDel(args []string) error {
	return writeRequest{
		name: "del", args: "KEY", summary: "Delete a key from the centers.", done: "deleted",
		send: func(ctx context.Context, cl *registry.Client, a []string, _ []byte) (registry.Version, error) {
			return cl.Delete(ctx, a[0])
		},
	}.run(args)
}

// writeRequest is a one-shot write command (put, del): one request through
// the failover client, then a line naming the key and the version the
// centers gave the write.
type writeRequest struct {
	name    string // subcommand
	args    string // positional arguments, space-separated, as the usage line shows them; the first is the key
	summary string
	done    string // verb of the line printed on success
	// value, if set, gets the value to write from the arguments, before
	// the request's time limit starts (it may read standard input).
	value func(args []string) ([]byte, error)
	send  func(ctx context.Context, cl *registry.Client, args []string, value []byte) (registry.Version, error)
}

func (w writeRequest) run(args []string) error {
	fs := newFlags(w.name, w.args, w.summary)
	cf := addClientFlags(fs)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != len(strings.Fields(w.args)) {
		return argsError(fs, "need "+w.args)
	}
	if err := cf.check(); err != nil {
		return err
	}
	var value []byte
	if w.value != nil {
		var err error
		if value, err = w.value(fs.Args()); err != nil {
			return err
		}
	}
	cl, err := cf.client(registry.RoleAdmin)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	v, err := w.send(ctx, cl, fs.Args(), value)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s (version %d@%s)\n", w.done, fs.Arg(0), v.HLC, v.Origin)
	return nil
}

// metaFlag collects repeated --meta k=v flags.
type metaFlag map[string]string

func (m metaFlag) String() string { return fmt.Sprint(map[string]string(m)) }

func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	m[k] = v
	return nil
}

func runRegister(args []string) error {
	fs := newFlags("register", "", "Register one service instance and heartbeat it until interrupted (then deregister it).")
	cf := addClientFlags(fs)
	var in registry.Instance
	fs.StringVar(&in.Service, "service", "", "service name (required)")
	fs.StringVar(&in.ID, "id", "", "instance id (default: hostname-pid)")
	fs.StringVar(&in.Address, "address", "127.0.0.1", "instance address")
	fs.IntVar(&in.Port, "port", 0, "instance port")
	fs.IntVar(&in.Weight, "weight", 1, "instance weight")
	health := fs.String("health", "passing", "passing, warning or critical")
	fs.DurationVar(&in.TTL, "ttl", registry.DefaultTTL, "expire the instance this long after its last heartbeat")
	tie := fs.Bool("tie", false, "also expire the instance when this connection drops")
	meta := metaFlag{}
	fs.Var(meta, "meta", "metadata key=value (repeatable)")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if in.Service == "" {
		return usageErrorf("--service is required")
	}
	if err := cf.check(); err != nil {
		return err
	}
	if in.ID == "" {
		host, _ := os.Hostname()
		in.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	in.Health, in.Metadata = registry.Health(*health), meta
	cl, err := cf.client(registry.RoleInstance)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, stop := signalContext(0)
	defer stop()
	// ctx bounds the registration's life: the instance is heartbeated until
	// the signal.
	if err := cl.Register(ctx, in, registry.RegisterOptions{TieToConn: *tie}); err != nil {
		return err
	}
	fmt.Printf("registered %s on %s; heartbeating until interrupted\n", in.Key(), cl.Center())
	<-ctx.Done()
	dctx, dcancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer dcancel()
	if err := cl.Deregister(dctx, in.Service, in.ID); err != nil {
		return fmt.Errorf("deregister: %w", err)
	}
	fmt.Printf("deregistered %s\n", in.Key())
	return nil
}

package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/shm"
)

func runAgent(args []string) error {
	cfg, logLevel, help, err := agentSettings(args)
	if help || err != nil {
		return err
	}
	level, err := parseLogLevel(logLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, tokenWarning, err := agentToken(cfg)
	if err != nil {
		return err
	}
	if tokenWarning != "" {
		log.Warn(tokenWarning)
	}
	opts, err := cfg.Options()
	if err != nil {
		return err
	}
	opts.Logger = log
	a, err := agent.New(opts)
	if errors.Is(err, shm.ErrWriterBusy) {
		return fmt.Errorf("another agent is already writing region %s: %w", opts.Shm.Resolve(opts.Region), err)
	}
	if err != nil {
		return err
	}
	ctx, stop := signalContext(0)
	defer stop()
	return a.Run(ctx)
}

// agentSettings parses the agent's flags and, with --config, its settings
// file; a flag given on the command line wins over the file.
func agentSettings(args []string) (cfg agent.Config, logLevel string, help bool, err error) {
	fs := newFlags("agent", "", "Run the host agent: follow a center of the pair and write the subscribed entries\ninto the shared-memory region. Flags override the settings of --config.")
	configFile := fs.String("config", "", "settings file (JSON, or YAML if it ends in .yaml/.yml)")
	centers := fs.String("centers", "", "center addresses, comma-separated (host:port,host:port)")
	fs.StringVar(&cfg.Region, "region", defaultRegion, "region name or path")
	subscribe := fs.String("subscribe", "", "prefixes to subscribe to, comma-separated (e.g. svc/,cfg/web/)")
	fs.StringVar(&cfg.Control, "control", "", "path of the control socket (empty: none)")
	fs.StringVar(&cfg.ControlMode, "control-mode", "", "control socket file mode, octal (default 0660)")
	controlUIDs := fs.String("control-uids", "", "uids besides the agent's own and root allowed on the control socket, comma-separated")
	fs.StringVar(&cfg.Metrics, "metrics", "", "address to serve Prometheus metrics on, e.g. 127.0.0.1:9178 (empty: none)")
	token := addTokenFlags(fs, "token for the centers (needed to register instances for local processes)")
	fs.StringVar(&cfg.TLSCA, "tls-ca", "", "CA certificate (PEM) to verify the centers; enables TLS")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "client certificate (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "client key (PEM)")
	fs.StringVar(&cfg.TLSServerName, "tls-server-name", "", "server name to verify in the centers' certificates")
	fs.Int64Var(&cfg.RegionSize, "region-size", 0, "initial region size in bytes when creating it (default 64 MiB; it grows)")
	fs.StringVar(&cfg.HugeTLBDir, "hugetlbfs-dir", "", "a hugetlbfs mount to put the region's data file on, for 2 MiB pages (falls back to a regular file when the pool is short; see docs/AGENT.md)")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if help, err = parse(fs, args); help || err != nil {
		return cfg, "", help, err
	}
	if _, err := parseLogLevel(logLevel); err != nil {
		return cfg, "", false, err
	}
	given, err := token.given()
	if err != nil {
		return cfg, "", false, err
	}
	cfg.Token, cfg.TokenFile = *token.token, *token.file
	if *centers != "" {
		cfg.Centers = splitList(*centers)
	}
	if *subscribe != "" {
		cfg.Subscribe = splitList(*subscribe)
	}
	if *controlUIDs != "" {
		for _, s := range splitList(*controlUIDs) {
			uid, err := strconv.Atoi(s)
			if err != nil {
				return cfg, "", false, usageErrorf("--control-uids: %q is not a uid", s)
			}
			cfg.ControlUIDs = append(cfg.ControlUIDs, uid)
		}
	}
	if *configFile != "" {
		file, err := agent.LoadConfig(*configFile)
		if err != nil {
			return cfg, "", false, err
		}
		cfg = overrideConfig(file, cfg, fs)
	}
	// $SHMREG_TOKEN_FILE is the fallback: neither the command line nor the
	// settings file names a token.
	if !given["token"] && !given["token-file"] && cfg.Token == "" && cfg.TokenFile == "" {
		cfg.TokenFile = os.Getenv(tokenFileEnv)
	}
	return cfg, logLevel, false, nil
}

// agentToken reads the token file cfg names, if cfg has no token itself
// (a token in the settings file wins over its token_file, as in
// agent.Config), with the checks and the warning every command applies
// (readTokenFile), and returns cfg holding the token.
func agentToken(cfg agent.Config) (agent.Config, string, error) {
	if cfg.Token != "" || cfg.TokenFile == "" {
		return cfg, "", nil
	}
	token, warning, err := readTokenFile(cfg.TokenFile)
	if err != nil {
		return cfg, "", err
	}
	cfg.Token, cfg.TokenFile = token, ""
	return cfg, warning, nil
}

// overrideConfig returns the file's settings with every flag given on the
// command line taking precedence.
func overrideConfig(file, flags agent.Config, fs *flag.FlagSet) agent.Config {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	pick := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	if set["centers"] {
		file.Centers = flags.Centers
	}
	if set["subscribe"] {
		file.Subscribe = flags.Subscribe
	}
	if set["control-uids"] {
		file.ControlUIDs = flags.ControlUIDs
	}
	if set["region-size"] {
		file.RegionSize = flags.RegionSize
	}
	if set["hugetlbfs-dir"] {
		file.HugeTLBDir = flags.HugeTLBDir
	}
	if set["region"] || file.Region == "" {
		file.Region = flags.Region
	}
	pick("control", &file.Control, flags.Control)
	pick("control-mode", &file.ControlMode, flags.ControlMode)
	pick("metrics", &file.Metrics, flags.Metrics)
	if set["token"] || set["token-file"] {
		// A token named on the command line replaces the file's, whichever
		// of token and token_file the file uses.
		file.Token, file.TokenFile = flags.Token, flags.TokenFile
	}
	pick("tls-ca", &file.TLSCA, flags.TLSCA)
	pick("tls-cert", &file.TLSCert, flags.TLSCert)
	pick("tls-key", &file.TLSKey, flags.TLSKey)
	pick("tls-server-name", &file.TLSServerName, flags.TLSServerName)
	return file
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

func runCenter(args []string) error {
	fs := newFlags("center", "", "Run a registry center, one of the mirrored pair.")
	listen := fs.String("listen", "127.0.0.1:7701", "address to serve the registry protocol on")
	peer := fs.String("peer", "", "address of the other center of the pair (empty: no mirror)")
	data := fs.String("data", "", "data directory (bbolt store and center id); required")
	token := addTokenFlags(fs, "token that writers must present (empty: none)")
	tlsCert := fs.String("tls-cert", "", "serve TLS with this certificate (PEM)")
	tlsKey := fs.String("tls-key", "", "key for --tls-cert (PEM)")
	clientCA := fs.String("tls-client-ca", "", "CA (PEM) verifying client certificates; peers must present one")
	peerCA := fs.String("peer-tls-ca", "", "dial the peer over TLS, verifying it with this CA (PEM)")
	peerCert := fs.String("peer-tls-cert", "", "client certificate (PEM) presented to the peer")
	peerKey := fs.String("peer-tls-key", "", "key for --peer-tls-cert (PEM)")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on this address at /metrics (empty: off)")
	maxFrame := fs.Int("max-frame", registry.DefaultMaxFrame, "largest frame accepted, in bytes")
	tombstones := fs.Duration("tombstone-retention", 24*time.Hour, "how long deletes are remembered")
	selfPres := fs.Float64("self-preservation", 0.85, "share of a service's instances whose simultaneous expiry is held (negative: off)")
	insecure := fs.Bool("insecure", false, "accept writes and peers from anyone who can connect, without a token or client certificate (never in production; logged loudly)")
	insecurePeers := fs.Bool("insecure-peers", false, "accept role peer without the token or a client certificate (a forged peer can overwrite every record; logged loudly)")
	maxClockAhead := fs.Duration("max-clock-ahead", time.Minute, "refuse versions further ahead of this center's clock (must exceed the pair's clock skew)")
	maxConns := fs.Int("max-conns", 10000, "connections served at once")
	maxConnsPerAddr := fs.Int("max-conns-per-addr", 256, "connections from one IP address")
	maxSubs := fs.Int("max-subscriptions", 8, "subscriptions per connection")
	unhealthyAfter := fs.Duration("unhealthy-after", 5*time.Second, "stop serving subscriptions once the store has failed this long")
	writeTimeout := fs.Duration("write-timeout", 10*time.Second, "close a connection that takes nothing written to it for this long")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	cf := addClusterFlags(fs)
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if err := cf.check(fs); err != nil {
		return err
	}
	if *data == "" && !*cf.on {
		return usageErrorf("--data is required")
	}
	settings := centerSettings{
		listen: *listen, peer: *peer, metrics: *metrics, maxFrame: *maxFrame, selfPreservation: *selfPres,
		tombstones: *tombstones, logLevel: *logLevel, tlsCert: *tlsCert, tlsKey: *tlsKey, clientCA: *clientCA,
		peerCA: *peerCA, peerCert: *peerCert, peerKey: *peerKey,
	}
	if err := settings.check(); err != nil {
		return err
	}
	tok, tokenWarning, err := token.resolve(os.Getenv(tokenFileEnv))
	if err != nil {
		return err
	}
	level, err := parseLogLevel(*logLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if tokenWarning != "" {
		log.Warn(tokenWarning)
	}

	opts := pair.Options{Options: center.Options{Listen: *listen, Token: tok, MaxFrame: *maxFrame, SelfPreservation: *selfPres, Logger: log, Insecure: *insecure, InsecurePeers: *insecurePeers, MaxConns: *maxConns, MaxConnsPerAddr: *maxConnsPerAddr, MaxSubscriptions: *maxSubs, UnhealthyAfter: *unhealthyAfter, WriteTimeout: *writeTimeout}, Peer: *peer, DataDir: *data, TombstoneRetention: *tombstones, MaxClockAhead: *maxClockAhead}
	if *tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert: %w", err)
		}
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if *clientCA != "" {
			pool, err := loadPool(*clientCA)
			if err != nil {
				return fmt.Errorf("--tls-client-ca: %w", err)
			}
			opts.TLS.ClientCAs, opts.TLS.ClientAuth = pool, tls.VerifyClientCertIfGiven
			opts.RequirePeerCert = true
		}
	}
	if *peerCA != "" {
		pool, err := loadPool(*peerCA)
		if err != nil {
			return fmt.Errorf("--peer-tls-ca: %w", err)
		}
		opts.PeerTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if *peerCert != "" {
			cert, err := tls.LoadX509KeyPair(*peerCert, *peerKey)
			if err != nil {
				return fmt.Errorf("--peer-tls-cert: %w", err)
			}
			opts.PeerTLS.Certificates = []tls.Certificate{cert}
		}
		if host, _, err := net.SplitHostPort(*peer); err == nil {
			opts.PeerTLS.ServerName = host
		}
	}
	if tok == "" && *clientCA == "" && !*insecure {
		return usageErrorf("nobody could write to this center: give it a token (--token-file) or client certificates (--tls-client-ca), or say --insecure for a throw-away setup")
	}
	if tok != "" && *insecure {
		return usageErrorf("--insecure with a token: choose one")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Registerer = reg

	ctx, stop := signalContext(0)
	defer stop()
	var c interface {
		Start(context.Context) error
		Shutdown(context.Context) error
	}
	if *cf.on {
		c, err = newClusterCenter(ctx, cf, opts.Options, *data, *logLevel)
	} else {
		c, err = pair.New(opts)
	}
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return err
	}
	var srv *http.Server
	if *metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv = &http.Server{Addr: *metrics, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if srv != nil {
		srv.Shutdown(sctx)
	}
	return c.Shutdown(sctx)
}

// centerSettings are the center's flag values that are checked before
// anything starts: each would otherwise be accepted without a word and
// fail later, or never (a peer address without a port is retried forever;
// the registry silently raises a too small --max-frame, and reads a
// --self-preservation of 0 as its default).
type centerSettings struct {
	listen, peer, metrics string
	maxFrame              int
	selfPreservation      float64
	tombstones            time.Duration
	logLevel              string
	tlsCert, tlsKey       string
	clientCA              string
	peerCA                string
	peerCert, peerKey     string
}

// minMaxFrame is pair.Options.MaxFrame's documented minimum
// (the registry's own constant is not exported).
const minMaxFrame = 128 << 10

// check returns a usage error naming the first flag whose value the
// center cannot use, and why.
func (s centerSettings) check() error {
	for _, a := range []struct {
		flag, addr string
		zeroOK     bool // a listener may take any free port
	}{{"listen", s.listen, true}, {"peer", s.peer, false}, {"metrics", s.metrics, true}} {
		if a.addr == "" && a.flag != "listen" {
			continue // empty: no mirror, no metrics
		}
		if err := checkAddr(a.addr, a.zeroOK); err != nil {
			return usageErrorf("--%s %s: %v", a.flag, a.addr, err)
		}
	}
	// The registry reads 0 as its default (0.85), and a share of 1 or more
	// never holds anything: neither is what it looks like.
	if sp := s.selfPreservation; !(sp < 0 || sp > 0 && sp < 1) {
		return usageErrorf("--self-preservation %s: want a share in (0,1), or a negative value to turn it off",
			strconv.FormatFloat(sp, 'g', -1, 64))
	}
	if s.maxFrame < minMaxFrame {
		return usageErrorf("--max-frame %d: the smallest is %d (128 KiB)", s.maxFrame, minMaxFrame)
	}
	// 0 would be read as the default (24h); a negative retention would
	// purge deletes at once and let the peer resurrect them.
	if s.tombstones <= 0 {
		return usageErrorf("--tombstone-retention %s: must be positive", s.tombstones)
	}
	if _, err := parseLogLevel(s.logLevel); err != nil {
		return err
	}
	for _, need := range []struct {
		given, flag, needs string
		ok                 bool
	}{
		{s.tlsKey, "tls-key", "tls-cert", s.tlsCert != ""},
		{s.tlsCert, "tls-cert", "tls-key", s.tlsKey != ""},
		{s.clientCA, "tls-client-ca", "tls-cert", s.tlsCert != ""},
		{s.peerCert, "peer-tls-cert", "peer-tls-ca", s.peerCA != ""},
		{s.peerCert, "peer-tls-cert", "peer-tls-key", s.peerKey != ""},
		{s.peerKey, "peer-tls-key", "peer-tls-cert", s.peerCert != ""},
	} {
		if need.given != "" && !need.ok {
			return usageErrorf("--%s needs --%s", need.flag, need.needs)
		}
	}
	return nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", path)
	}
	return pool, nil
}

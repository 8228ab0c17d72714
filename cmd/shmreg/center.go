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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shmreg/shmreg/registry"
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
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *data == "" {
		return errors.New("--data is required")
	}
	tok, tokenWarning, err := token.resolve(os.Getenv(tokenFileEnv))
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if tokenWarning != "" {
		log.Warn(tokenWarning)
	}

	opts := registry.CenterOptions{
		Listen: *listen, Peer: *peer, DataDir: *data, Token: tok, MaxFrame: *maxFrame,
		TombstoneRetention: *tombstones, SelfPreservation: *selfPres, Logger: log,
	}
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Registerer = reg

	ctx, stop := signalContext(0)
	defer stop()
	c, err := registry.NewCenter(opts)
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

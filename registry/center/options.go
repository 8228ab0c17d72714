package center

import (
	"crypto/tls"
	"io"
	"log/slog"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure the front of a center (see Backend; a backend has
// options of its own). The zero value of every field means its
// documented default.
type Options struct {
	// Listen is the TCP address to serve on. Default "127.0.0.1:0" (an
	// ephemeral loopback port; see Center.Addr).
	Listen string
	// Token, if set, must be presented in the handshake by every connection
	// that writes (roles instance, admin and peer, and any agent that writes).
	// Agents may subscribe and read without it. A connection that presents
	// a client certificate verified against TLS.ClientCAs is authenticated
	// too, with or without the token.
	Token string
	// Insecure accepts writes and role peer from connections that are not
	// authenticated (no token is set and no client certificate was
	// verified). Off by default: a center with neither a token nor client
	// certificates then serves reads only. For tests and throw-away setups;
	// the center logs a warning at start.
	Insecure bool
	// InsecurePeers accepts role peer from unauthenticated connections
	// (writers still need the token or a certificate). A forged peer can
	// overwrite any record, so this is as dangerous as Insecure.
	InsecurePeers bool
	// MaxConns caps the connections served at once; more are closed at
	// accept. Default 10000.
	MaxConns int
	// MaxConnsPerAddr caps the connections from one remote IP address.
	// Default 256 (one host's agent plus the SDK clients of its services).
	MaxConnsPerAddr int
	// MaxSubscriptions caps the subscriptions of one connection (an agent
	// needs one). Default 8.
	MaxSubscriptions int
	// MaxConnQueue is the budget of encoded frames queued for one
	// connection: producers of large replies and pushes wait for room, and
	// a client that lets more than this pile up (it does not read) is cut
	// off. Default 8 MiB; at least 2*MaxFrame.
	MaxConnQueue int
	// MaxOutbound is the budget, across all connections, of large frames
	// (64 KiB or more: snapshots, long replies) queued for writing: their
	// producers wait for room, so that many clients that read slowly cannot
	// together make the center buffer more than this. Default 32 MiB; at
	// least 2*MaxFrame.
	MaxOutbound int
	// MaxInbound is the budget, across all connections, of bytes held in
	// partly received large frames (over 64 KiB): a connection waits for
	// room before it reads one, and is closed if none frees up within the
	// handshake timeout. Default 16 MiB; at least MaxFrame.
	MaxInbound int
	// WriteTimeout is how long a connection may take nothing of what is
	// written to it before it is closed (its client is gone or stuck).
	// Default 10s.
	WriteTimeout time.Duration
	// UnhealthyAfter is how long the store may keep failing before the
	// center stops serving subscriptions (so that agents move to the peer)
	// and reports itself unhealthy. Writes are refused with ErrUnavailable
	// from the first failure. Default 5s.
	UnhealthyAfter time.Duration
	// TLS, if set, serves TLS with this configuration. To require client
	// certificates from peers, set ClientAuth to VerifyClientCertIfGiven (or
	// stricter) with ClientCAs, and RequirePeerCert.
	TLS *tls.Config
	// RequirePeerCert refuses role peer on a connection without a verified
	// client certificate. Needs TLS.
	RequirePeerCert bool
	// MaxFrame is the largest frame payload accepted or sent, in bytes.
	// Default DefaultMaxFrame (4 MiB); minimum 128 KiB.
	MaxFrame int
	// KeepAlive is how often idle connections are pinged by clients; the
	// center closes a connection silent for 3*KeepAlive. Default 10s.
	KeepAlive time.Duration
	// TTLGrace is extra time past an instance's TTL before it expires.
	// Default 0: an instance expires TTL after its last heartbeat (checked
	// every SweepInterval).
	TTLGrace time.Duration
	// DisconnectGrace is how long an instance registered with TieToConn
	// outlives its connection. Default 2s.
	DisconnectGrace time.Duration
	// SweepInterval is how often expiries are checked. Default 200ms.
	SweepInterval time.Duration
	// SelfPreservation is the share of a service's instances above which a
	// simultaneous expiry is held back as suspect (a network problem rather
	// than dead instances). Default 0.85; a negative value disables it.
	SelfPreservation float64
	// SelfPreservationMin is the number of simultaneous expiries in one
	// service below which self-preservation never applies (so a lone dead
	// instance still expires). Default 3.
	SelfPreservationMin int
	// SelfPreservationMaxHold is how long held instances are kept before
	// they expire anyway. Default 10m.
	SelfPreservationMaxHold time.Duration
	// PushDelay is how long a subscription waits after a change, gathering
	// more, before pushing a batch. Default 1ms; negative means 0.
	PushDelay time.Duration
	// MaxBacklog is how many undelivered changes a subscriber may lag behind
	// before its connection is closed (it resumes by revision). Default 1<<20.
	MaxBacklog int
	// Logger receives the center's logs. Default: discard.
	Logger *slog.Logger
	// Registerer, if set, receives the center's Prometheus metrics.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = wire.DefaultMaxFrame
	}
	if o.MaxFrame < wire.MinMaxFrame {
		o.MaxFrame = wire.MinMaxFrame
	}
	def(&o.KeepAlive, 10*time.Second)
	def(&o.DisconnectGrace, 2*time.Second)
	def(&o.SweepInterval, 200*time.Millisecond)
	def(&o.SelfPreservationMaxHold, 10*time.Minute)
	def(&o.PushDelay, time.Millisecond)
	def(&o.UnhealthyAfter, 5*time.Second)
	def(&o.WriteTimeout, wire.WriteTimeout)
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt(&o.MaxConns, 10000)
	defInt(&o.MaxConnsPerAddr, 256)
	defInt(&o.MaxSubscriptions, 8)
	defInt(&o.MaxConnQueue, 8<<20)
	defInt(&o.MaxInbound, 16<<20)
	defInt(&o.MaxOutbound, 32<<20)
	o.MaxOutbound = max(o.MaxOutbound, 2*o.MaxFrame)
	o.MaxConnQueue = max(o.MaxConnQueue, 2*o.MaxFrame)
	o.MaxInbound = max(o.MaxInbound, o.MaxFrame)
	if o.PushDelay < 0 {
		o.PushDelay = 0
	}
	if o.SelfPreservation == 0 {
		o.SelfPreservation = 0.85
	}
	if o.SelfPreservationMin == 0 {
		o.SelfPreservationMin = 3
	}
	if o.MaxBacklog == 0 {
		o.MaxBacklog = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

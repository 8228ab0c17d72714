package registry

import (
	"crypto/tls"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CenterOptions configures a Center. The zero value of every field means its
// documented default.
type CenterOptions struct {
	// Listen is the TCP address to serve on. Default "127.0.0.1:0" (an
	// ephemeral loopback port; see Center.Addr).
	Listen string
	// Peer is the address of the other center of the pair. Empty: no mirror.
	Peer string
	// DataDir holds the center's bbolt store and its stable center id. Empty
	// means in memory only: nothing survives a restart and the id is new on
	// every start (for tests and benchmarks).
	DataDir string
	// Token, if set, must be presented in the handshake by every connection
	// that writes (roles instance, admin and peer, and any agent that writes).
	// Agents may subscribe and read without it.
	Token string
	// TLS, if set, serves TLS with this configuration. To require client
	// certificates from peers, set ClientAuth to VerifyClientCertIfGiven (or
	// stricter) with ClientCAs, and RequirePeerCert.
	TLS *tls.Config
	// RequirePeerCert refuses role peer on a connection without a verified
	// client certificate. Needs TLS.
	RequirePeerCert bool
	// PeerTLS, if set, is used to dial the peer over TLS (with the client
	// certificate the peer requires).
	PeerTLS *tls.Config
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
	// TombstoneRetention is how long a delete is remembered (so the peer
	// cannot resurrect the key) before it is purged. Default 24h. The pair
	// must not stay partitioned longer than this.
	TombstoneRetention time.Duration
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
	// AntiEntropyInterval is how often the pair compares digests while
	// connected (they always do on (re)connect). Default 30s.
	AntiEntropyInterval time.Duration
	// TouchInterval is how often heartbeats received are forwarded to the
	// peer, so that either center can judge liveness. Default 500ms.
	TouchInterval time.Duration
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

func (o CenterOptions) withDefaults() CenterOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.MaxFrame < minMaxFrame {
		o.MaxFrame = minMaxFrame
	}
	def(&o.KeepAlive, 10*time.Second)
	def(&o.DisconnectGrace, 2*time.Second)
	def(&o.SweepInterval, 200*time.Millisecond)
	def(&o.TombstoneRetention, 24*time.Hour)
	def(&o.SelfPreservationMaxHold, 10*time.Minute)
	def(&o.AntiEntropyInterval, 30*time.Second)
	def(&o.TouchInterval, 500*time.Millisecond)
	def(&o.PushDelay, time.Millisecond)
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

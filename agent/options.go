package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// Options configure an Agent. The zero value of every field but Centers,
// Region and Prefixes means its documented default.
type Options struct {
	// Centers are the addresses of the mirrored pair (one or two, host:port).
	// The agent follows the first that answers and fails over to the next.
	Centers []string
	// Region names the shared-memory region the agent writes (a bare name
	// resolves under Shm.Dir, see shm.Options.Resolve). It is created if it
	// does not exist and reused if it does (the agent resumes from the place
	// recorded in it).
	Region string
	// Shm configures the region (directory, initial size, permissions).
	Shm shm.Options
	// Prefixes are the key prefixes the host subscribes to ("svc/" for every
	// service instance, "" for everything). More can be added at run time
	// through the control socket; those are remembered beside the region.
	Prefixes []string

	// Token is presented to the centers; it is needed only to register
	// instances on behalf of local processes.
	Token string
	// TLS, if set, dials the centers with TLS.
	TLS *tls.Config

	// Control is the path of the Unix control socket. Empty: no socket.
	Control string
	// ControlMode is the socket file's mode. Default 0660.
	ControlMode os.FileMode
	// ControlUIDs are the uids, besides the agent's own and root, allowed
	// to use the control socket (checked with SO_PEERCRED on each
	// connection).
	ControlUIDs []int

	// Metrics is the address to serve Prometheus metrics on (/metrics).
	// Empty: not served (they are still available from Agent.Metrics).
	Metrics string

	// DialTimeout bounds one connection attempt to a center. Default 1s.
	DialTimeout time.Duration
	// KeepAlive is the ping interval on the center connection; a center
	// silent for 3*KeepAlive is given up. Default 300ms, so that even a
	// center that vanishes without closing its socket is left within about
	// a second (one that closes it is left at once).
	KeepAlive time.Duration
	// RetryMin and RetryMax bound the backoff after a failure: a round of
	// connection attempts in which no center answered (each round tries all
	// of them), a connection to a center that ended, or a commit the region
	// refused (retried without a connection). The delay doubles from
	// RetryMin up to RetryMax at each failure, with ±25% jitter. Defaults
	// 50ms and 1s.
	RetryMin, RetryMax time.Duration
	// StableAfter is how long a connection must have lasted for the failure
	// that ends it to wait only RetryMin again (a normal failover); a
	// connection that ends sooner is one more failure in a row. Default 5s.
	StableAfter time.Duration

	// SuspectShare is the share of a service's instances above which a
	// snapshot's deletions of that service are held as suspect rather than
	// applied. Default 0.5; a negative value disables the check.
	SuspectShare float64
	// SuspectMin is the number of instances a service must have in the
	// region for the check to apply. Default 2.
	SuspectMin int
	// SuspectHold is how long suspect deletions are held before the agent
	// asks its center again and applies what the center then says. Default
	// 10s.
	SuspectHold time.Duration

	// Logger receives the agent's logs. Default: discard.
	Logger *slog.Logger
}

// ErrConfig reports options that cannot work.
var ErrConfig = errors.New("agent: invalid configuration")

func (o Options) withDefaults() (Options, error) {
	switch {
	case len(o.Centers) == 0:
		return o, fmt.Errorf("%w: no center address", ErrConfig)
	case o.Region == "":
		return o, fmt.Errorf("%w: no region", ErrConfig)
	case len(o.Prefixes) == 0:
		return o, fmt.Errorf("%w: no prefix to subscribe to", ErrConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.DialTimeout, time.Second)
	def(&o.KeepAlive, 300*time.Millisecond)
	def(&o.RetryMin, 50*time.Millisecond)
	def(&o.RetryMax, time.Second)
	def(&o.StableAfter, 5*time.Second)
	def(&o.SuspectHold, 10*time.Second)
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.ControlMode == 0 {
		o.ControlMode = 0o660
	}
	if o.SuspectShare == 0 {
		o.SuspectShare = 0.5
	}
	if o.SuspectMin <= 0 {
		o.SuspectMin = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.Prefixes = normalizePrefixes(o.Prefixes)
	return o, nil
}

package discovery

import (
	"io"
	"log/slog"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// Options configure a Catalog. The zero value is usable: every field has a
// documented default.
type Options struct {
	// Region configures how Open finds and maps the region (its Dir in
	// particular). Ignored by New, which is given an open reader.
	Region shm.Options
	// WarningIsUnhealthy excludes instances whose health is "warning" from
	// Instances and from pickers. Default false: an instance in warning still
	// serves (it reports a degraded state, as Consul's DNS interface treats
	// it), so only "critical" instances are left out.
	WarningIsUnhealthy bool
	// AgentSocket is the agent's control socket (a Unix socket path), used to
	// ask the agent to refresh a stale entry. Default "": stale entries are
	// reported (ErrStale) but no refresh can be asked for.
	AgentSocket string
	// RefreshTimeout bounds one refresh request to the agent, including the
	// background request GetInto makes for a stale entry. Default 5s.
	RefreshTimeout time.Duration
	// StaleRefreshInterval is the least time between two background refresh
	// requests GetInto sends for the same stale key, so that a key whose
	// producer is still old (the center holds the old schema too) does not
	// cost a request per read. Default 1s. Refresh and GetFreshInto are not
	// limited.
	StaleRefreshInterval time.Duration
	// WatchBuffer is the capacity of each watcher's event channel. Default 16.
	WatchBuffer int
	// Logger receives the catalog's logs (undecodable instances, failed
	// background refreshes). Default: discard.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.RefreshTimeout <= 0 {
		o.RefreshTimeout = 5 * time.Second
	}
	if o.StaleRefreshInterval <= 0 {
		o.StaleRefreshInterval = time.Second
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = 16
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

package discovery

import "errors"

// Errors a caller can act on. Errors from the region (shm.ErrNotFound,
// shm.ErrNoRegion, ...) are passed through wrapped, so errors.Is works on
// them too.
var (
	// ErrStale: the stored value lacks fields the destination struct
	// declares; it was written by an older version of its producer. The
	// value was still decoded (the missing fields keep their zero values).
	ErrStale = errors.New("discovery: stale entry (written under an older schema)")
	// ErrNoInstances: the service has no (healthy) instance in the region.
	ErrNoInstances = errors.New("discovery: no instances")
	// ErrNoAgent: no agent control socket is configured, so a refresh cannot
	// be asked for.
	ErrNoAgent = errors.New("discovery: no agent control socket configured")
	// ErrRefresh: the agent answered a refresh request with an error, or
	// could not be reached.
	ErrRefresh = errors.New("discovery: refresh failed")
	// ErrClosed: the catalog was closed.
	ErrClosed = errors.New("discovery: catalog closed")
)

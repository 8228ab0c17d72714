package shm

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultDir is where regions live unless Options.Dir or $SHMREG_DIR says
// otherwise: tmpfs, so the region outlives its writer but not a reboot.
const DefaultDir = "/dev/shm/shmreg"

// Limits on what one entry may hold.
const (
	MaxKeyLen   = 4096
	MaxValueLen = 1<<24 - 1
)

// Options configure a region. The zero value is usable: every field has a
// documented default.
type Options struct {
	// Dir is the directory a bare region name is resolved in. Default:
	// $SHMREG_DIR if set, else DefaultDir. A path containing a slash is used
	// as given.
	Dir string
	// Size is the data file's size when the writer creates it. Default 64 MiB.
	// The writer grows the region (into a new file) when it fills.
	Size int64
	// Slots is the number of reader slots in the control file. Default 1024.
	Slots int
	// Perm is the data file's mode. Default 0644. The control file gets the
	// same mode plus write for everyone who may read, because readers write
	// their slots there.
	Perm os.FileMode
	// LockTimeout bounds how long the writer and snapshot readers wait for
	// the region's reader/writer lock before forcing it. Default 2s.
	LockTimeout time.Duration
	// ReadLease is the longest a single read (a View or Scan callback
	// included) may run. A read older than this may be forced out of its slot
	// by the writer and then fails with ErrEvicted; a superseded mapping is
	// unmapped this long after the reader left it. It is also how long an
	// idle reader slot (one that keeps the epoch of its last read) can hold
	// memory reuse back. Default 2s.
	ReadLease time.Duration
	// HugeTLBDir, if set, is a hugetlbfs mount (for example /dev/hugepages)
	// where the writer puts the data file, for pages of the mount's size
	// (2 MiB) reserved up front; the region's path becomes a symbolic link
	// to it, and the control file stays beside the path. When the pool has
	// too few free huge pages for the file, the writer uses a regular file
	// beside the path instead and says why in Stat.HugeTLBFallback. Readers
	// need not set it. (A tmpfs mounted with huge=within_size, given as
	// Dir, is the other way to huge pages: see docs/AGENT.md.)
	HugeTLBDir string

	// inlineMax overrides the largest value kept inside its node (tests:
	// -1 places every value apart, as a version-1 writer did).
	inlineMax int
}

// inline reports whether a value of n bytes goes inside its node.
func (o Options) inline(n int) bool {
	if o.inlineMax == 0 {
		return n <= inlineMax
	}
	return n <= o.inlineMax
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = os.Getenv("SHMREG_DIR")
	}
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Size <= 0 {
		o.Size = 64 << 20
	}
	if o.Slots <= 0 {
		o.Slots = 1024
	}
	if o.Perm == 0 {
		o.Perm = 0o644
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.ReadLease <= 0 {
		o.ReadLease = 2 * time.Second
	}
	return o
}

// Resolve returns the data file path for name: name itself if it contains
// a slash, else name inside the options' directory.
func (o Options) Resolve(name string) string {
	o = o.withDefaults()
	if strings.ContainsRune(name, '/') {
		return name
	}
	return filepath.Join(o.Dir, name)
}

func ctlPath(path string) string { return path + ".ctl" }

package shm

import (
	"errors"
	"fmt"

	"github.com/shmreg/shmreg/skiplist"
)

// Errors a caller can act on. Every error the package returns wraps one of
// these (or an os/syscall error) with a message naming the file.
var (
	// ErrNotFound: the key has no live value.
	ErrNotFound = errors.New("shm: key not found")
	// ErrBadMagic: the file is not a shmreg region.
	ErrBadMagic = errors.New("shm: not a shmreg region (bad magic)")
	// ErrLayoutVersion: the region was written by a layout this build does not know.
	ErrLayoutVersion = errors.New("shm: unknown region layout version")
	// ErrTruncated: the file is shorter than its header says, or too small to be a region.
	ErrTruncated = errors.New("shm: region file truncated or too small")
	// ErrCorrupt: a structure inside the region breaks an invariant.
	ErrCorrupt = skiplist.ErrCorrupt
	// ErrNoSpace: the file system (usually /dev/shm) has no room for the region.
	ErrNoSpace = errors.New("shm: no space left for the region")
	// ErrFull: an allocation does not fit and the region could not be grown.
	ErrFull = errors.New("shm: region full")
	// ErrWriterBusy: another live process is the region's writer.
	ErrWriterBusy = errors.New("shm: region already has a writer")
	// ErrNoRegion: no region exists at the path.
	ErrNoRegion = errors.New("shm: no region at path")
	// ErrClosed: the reader or writer was closed.
	ErrClosed = errors.New("shm: closed")
	// ErrKeyTooLarge and ErrValueTooLarge: the entry exceeds the limits.
	ErrKeyTooLarge   = errors.New("shm: key empty or too large")
	ErrValueTooLarge = errors.New("shm: value too large")
	// ErrNoSlots: every reader slot in the control file is taken.
	ErrNoSlots = errors.New("shm: no free reader slot")
	// ErrEvicted: the reader held its slot past the lease and the writer
	// forced it free; what the read saw may have been reused, so it is discarded.
	ErrEvicted = errors.New("shm: read outlived its lease and was evicted")
)

// IncompleteError: a region with one of its two files (the data file and
// the control file beside it, PATH.ctl) missing, most likely removed by
// hand. It wraps ErrNoRegion: there is no region to read until its writer
// opens it again and recreates the control file (a missing data file means
// the entries are lost; the writer starts an empty region).
type IncompleteError struct {
	Path    string // the data file's path, which names the region
	Missing string // the file that is missing
	Control bool   // whether the missing file is the control file
}

func (e *IncompleteError) Error() string {
	if e.Control {
		return fmt.Sprintf("shm: region %s is incomplete: its control file %s is missing (the data file is there)", e.Path, e.Missing)
	}
	return fmt.Sprintf("shm: region %s is incomplete: its data file %s is missing (the control file is there)", e.Path, e.Missing)
}

func (e *IncompleteError) Unwrap() error { return ErrNoRegion }

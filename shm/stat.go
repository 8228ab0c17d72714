package shm

import (
	"sync/atomic"
	"time"
)

// Stat describes a region at one instant.
type Stat struct {
	Path          string    `json:"path"`
	LayoutVersion uint32    `json:"layout_version"`
	Created       time.Time `json:"created"`
	FileBytes     uint64    `json:"file_bytes"`     // size of the data file
	UsedBytes     uint64    `json:"used_bytes"`     // header + allocated pool bytes (both ends)
	FreeBytes     uint64    `json:"free_bytes"`     // pool bytes between the two cursors
	LiveBytes     uint64    `json:"live_bytes"`     // key + value bytes of live entries
	GarbageBytes  uint64    `json:"garbage_bytes"`  // unreachable bytes: retired, reusable, and blocks too large to reuse
	Entries       uint64    `json:"entries"`        // live keys
	Generation    uint64    `json:"generation"`     // commits made
	IndexSlots    uint64    `json:"index_slots"`    // capacity of the point-lookup table
	Compactions   uint64    `json:"compactions"`    // rebuilds into a new file
	Superseded    bool      `json:"superseded"`     // a newer file replaced this one
	Committing    bool      `json:"committing"`     // a commit is under way (or its writer died)
	WriterPid     uint64    `json:"writer_pid"`     // last writer to open the region
	PlaceCenter   string    `json:"place_center"`   // center the agent follows
	PlaceRevision uint64    `json:"place_revision"` // revision the agent applied
	ReaderSlots   int       `json:"reader_slots"`   // slots in the control file
	ReadersLive   int       `json:"readers_live"`   // slots held by live processes
	SlotsForced   uint64    `json:"slots_forced"`   // slots forced free after their lease
	SlotsReaped   uint64    `json:"slots_reaped"`   // slots of dead readers cleared
	LockForced    uint64    `json:"lock_forced"`    // forced acquisitions of the region lock
	LockRecovered uint64    `json:"lock_recovered"` // lock holders found dead and recovered

	RetiredBytes      uint64            `json:"retired_bytes"`              // retired, waiting for readers to move on
	ReusableBytes     uint64            `json:"reusable_bytes"`             // on the writer's free lists
	FreeByClass       map[uint64]uint64 `json:"free_by_class"`              // reusable bytes by block size
	OldestReaderEpoch uint64            `json:"oldest_reader_epoch"`        // at the writer's last reclamation pass
	SupersededMapped  int               `json:"superseded_mapped"`          // old files this reader still maps
	ReuseError        string            `json:"reuse_error,omitempty"`      // (writer only) why memory is not being reused
	HugeTLBFallback   string            `json:"hugetlb_fallback,omitempty"` // (writer only) why the file is not on Options.HugeTLBDir
}

func statOf(m *mapping, c *control) Stat {
	h := m.hdr
	center, rev := placeOf(h)
	low, high := atomic.LoadUint64(&h.alloc), atomic.LoadUint64(&h.valueAlloc)
	used := low + (m.size() - min(high, m.size()))
	st := Stat{
		Path:          m.path,
		LayoutVersion: h.version,
		Created:       time.Unix(0, int64(h.createdNs)),
		FileBytes:     m.size(),
		UsedBytes:     used,
		LiveBytes:     atomic.LoadUint64(&h.liveBytes),
		GarbageBytes:  atomic.LoadUint64(&h.garbageBytes),
		Entries:       atomic.LoadUint64(&h.entries),
		Generation:    m.loadGeneration(),
		Compactions:   atomic.LoadUint64(&h.compactions),
		Superseded:    m.loadState()&stateSuperseded != 0,
		Committing:    m.loadState()&stateCommitting != 0,
		WriterPid:     atomic.LoadUint64(&h.writerPid),
		PlaceCenter:   center,
		PlaceRevision: rev,
		ReaderSlots:   c.slots,
		ReadersLive:   c.slotsInUse(),
		SlotsForced:   atomic.LoadUint64(&c.hdr.slotsForced),
		SlotsReaped:   atomic.LoadUint64(&c.hdr.slotsReaped),
	}
	st.RetiredBytes = atomic.LoadUint64(&h.retiredBytes)
	st.ReusableBytes = atomic.LoadUint64(&h.reusableBytes)
	st.OldestReaderEpoch = atomic.LoadUint64(&h.oldestEpoch)
	for class := 0; class < numClasses; class++ {
		if b := atomic.LoadUint64(&h.freeByClass[class]); b > 0 {
			if st.FreeByClass == nil {
				st.FreeByClass = map[uint64]uint64{}
			}
			st.FreeByClass[classSize(class)] = b
		}
	}
	if low <= high {
		st.FreeBytes = high - low
	}
	if t, err := m.currentTable(); err == nil {
		st.IndexSlots = uint64(len(t.slots))
	}
	st.LockForced, st.LockRecovered = lockCounters(c)
	return st
}

// Stat describes the region as the writer sees it.
func (w *Writer) Stat() Stat {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Stat{Path: w.path}
	}
	st := statOf(w.m, w.ctl)
	if err := w.rec.barrierErr; err != nil {
		st.ReuseError = err.Error()
	}
	st.HugeTLBFallback = w.hugeFallback
	return st
}

// Stat describes the region as this reader sees it.
func (r *Reader) Stat() (Stat, error) {
	h, m, err := r.begin()
	if err != nil {
		return Stat{}, err
	}
	st := statOf(m, r.ctl)
	r.mu.Lock()
	st.SupersededMapped = len(r.retired)
	r.mu.Unlock()
	return st, r.end(h)
}

package pair

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// store is a center's durable state in one bbolt file, DIR/center.db:
//
//	bucket "records": key -> msgpack storedRecord (values and tombstones)
//	bucket "meta":    "center_id" -> id; "rev" -> uint64 BE (last revision
//	                  issued); "compacted_rev" -> uint64 BE (highest revision
//	                  of a purged tombstone)
//
// Every batch of changes is written in one transaction and fsync'd before
// any of them is acknowledged, applied in memory or pushed.
type store struct {
	db *bolt.DB
}

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	metaCenterID  = []byte("center_id")
	metaRev       = []byte("rev")
	metaCompacted = []byte("compacted_rev")
	metaProbe     = []byte("probe") // written by health probes only
)

type storedRecord struct {
	Value   []byte       `msgpack:"value"`
	Version wire.Version `msgpack:"version"`
	Deleted bool         `msgpack:"deleted,omitempty"`
	Rev     uint64       `msgpack:"rev"`
	WID     string       `msgpack:"wid,omitempty"`
}

// persistedState is what openStore recovers.
type persistedState struct {
	centerID     string
	rev          uint64
	compactedRev uint64
	records      []*wire.Record
}

func openStore(dir string) (*store, persistedState, error) {
	var st persistedState
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, st, fmt.Errorf("registry: data dir: %w", err)
	}
	path := filepath.Join(dir, "center.db")
	// The wait lets a center restarted in place take over from the old
	// process while it exits.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, st, storeBusyError(dir, path)
	}
	if err != nil {
		return nil, st, fmt.Errorf("registry: open store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		recs, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if id := meta.Get(metaCenterID); id != nil {
			st.centerID = string(id)
		} else {
			st.centerID = newCenterID()
			if err := meta.Put(metaCenterID, []byte(st.centerID)); err != nil {
				return err
			}
		}
		st.rev = getUint(meta, metaRev)
		st.compactedRev = getUint(meta, metaCompacted)
		return recs.ForEach(func(k, v []byte) error {
			var sr storedRecord
			if err := msgpack.Unmarshal(v, &sr); err != nil {
				return fmt.Errorf("record %q: %w", k, err)
			}
			st.records = append(st.records, &wire.Record{Key: string(k), Value: sr.Value, Version: sr.Version, Deleted: sr.Deleted, Rev: sr.Rev, WID: sr.WID})
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, st, fmt.Errorf("registry: load store: %w", err)
	}
	return &store{db: db}, st, nil
}

func getUint(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bolt.Bucket, k []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(k, buf[:])
}

// commit durably writes changed records and purged keys, and the revision
// counters, in one fsync'd transaction.
func (s *store) commit(changes []*wire.Record, purged []string, rev, compactedRev uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		for _, r := range changes {
			b, err := msgpack.Marshal(&storedRecord{Value: r.Value, Version: r.Version, Deleted: r.Deleted, Rev: r.Rev, WID: r.WID})
			if err != nil {
				return err
			}
			if err := recs.Put([]byte(r.Key), b); err != nil {
				return err
			}
		}
		for _, k := range purged {
			if err := recs.Delete([]byte(k)); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := putUint(meta, metaRev, rev); err != nil {
			return err
		}
		return putUint(meta, metaCompacted, compactedRev)
	})
}

// probeSize is the size of a health probe's write: large enough to need
// fresh pages (a tiny write may fit in pages the store already holds and
// succeed on a full disk).
const probeSize = 256 << 10

// probe makes one large durable write, then removes it, to learn whether
// the store persists again after a failure.
func (s *store) probe() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaProbe, make([]byte, probeSize))
	})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaProbe) })
}

func (s *store) close() error { return s.db.Close() }

func newCenterID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand never fails on supported platforms; fall back to time.
		binary.BigEndian.PutUint64(b[:], uint64(time.Now().UnixNano()))
	}
	return "c-" + hex.EncodeToString(b[:])
}

// ErrDataDirInUse: another process (another center, most likely) has the
// data directory's store open; two centers cannot share one. The error
// returned is a *DataDirInUseError.
var ErrDataDirInUse = errors.New("registry: data directory in use")

// DataDirInUseError says which directory is in use and, if the kernel tells
// (see lockHolder), by which process.
type DataDirInUseError struct {
	Dir, File string // the data directory and its locked store file
	Pid       int    // 0 if unknown
	Cmdline   string // the holder's command line, if known
}

func (e *DataDirInUseError) Error() string {
	by := fmt.Sprintf("another process holds %s locked", e.File)
	if e.Pid > 0 {
		by = fmt.Sprintf("pid %d holds %s locked", e.Pid, e.File)
		if e.Cmdline != "" {
			by = fmt.Sprintf("pid %d (%s) holds %s locked", e.Pid, e.Cmdline, e.File)
		}
	}
	return fmt.Sprintf("registry: data directory %s is in use by another center: %s; give each center its own data directory", e.Dir, by)
}

func (e *DataDirInUseError) Unwrap() error { return ErrDataDirInUse }

func storeBusyError(dir, path string) error {
	pid, cmd := lockHolder(path)
	return &DataDirInUseError{Dir: dir, File: path, Pid: pid, Cmdline: cmd}
}

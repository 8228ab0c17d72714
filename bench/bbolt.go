package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	bolt "go.etcd.io/bbolt"
)

var boltBucket = []byte("bench")

// boltSystem is an mmap'd B+tree: each client keeps one read transaction
// open and looks up in it, the fastest way to read bbolt.
type boltSystem struct {
	db  *bolt.DB
	mu  sync.Mutex
	txs []*bolt.Tx
}

// OpenBolt loads d into a bbolt file in dir.
func OpenBolt(_ context.Context, d *Dataset, dir string) (System, error) {
	db, err := bolt.Open(filepath.Join(dir, "bench.bolt"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(boltBucket)
		if err != nil {
			return err
		}
		for i, k := range d.Keys {
			if err := b.Put(k, d.Values[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bbolt load: %w", err)
	}
	return &boltSystem{db: db}, nil
}

func (s *boltSystem) Name() string { return "bbolt" }

func (s *boltSystem) Client(context.Context, int) (Lookup, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.txs = append(s.txs, tx)
	s.mu.Unlock()
	b := tx.Bucket(boltBucket)
	var sink int
	return func(_ context.Context, key []byte) error {
		v := b.Get(key)
		if v == nil {
			return fmt.Errorf("bbolt: %s missing", key)
		}
		sink += touch(v)
		return nil
	}, nil
}

func (s *boltSystem) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, tx := range s.txs {
		errs = append(errs, tx.Rollback())
	}
	s.txs = nil
	errs = append(errs, s.db.Close())
	return errors.Join(errs...)
}

package pair

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

// Anti-entropy: the key space is cut into numBuckets ranges by a hash of the
// key. Each center keeps, per bucket, the XOR of a hash of every record
// (key, version, deleted) it holds, tombstones included, updated as records
// change. Two centers compare the table; for each bucket that differs they
// exchange the bucket's records and each side takes the newer version of
// every key. Because tombstones take part, a delete wins over the older value
// it deleted and nothing is resurrected.

const numBuckets = 1024

type digestTable struct {
	sums [numBuckets]uint64
	keys [numBuckets]map[string]struct{}
}

func (d *digestTable) init() {
	for i := range d.keys {
		d.keys[i] = make(map[string]struct{})
	}
}

func bucketOf(key string) int {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64() % numBuckets)
}

func recordHash(r *wire.Record) uint64 {
	h := fnv.New64a()
	h.Write([]byte(r.Key))
	var b [10]byte
	binary.LittleEndian.PutUint64(b[1:9], r.Version.HLC)
	if r.Deleted {
		b[9] = 1
	}
	h.Write(b[:])
	h.Write([]byte(r.Version.Origin))
	// splitmix64 finalizer: spread fnv's weak high bits before XOR-folding.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (d *digestTable) add(r *wire.Record) {
	b := bucketOf(r.Key)
	d.sums[b] ^= recordHash(r)
	d.keys[b][r.Key] = struct{}{}
}

func (d *digestTable) remove(r *wire.Record) {
	b := bucketOf(r.Key)
	d.sums[b] ^= recordHash(r)
	delete(d.keys[b], r.Key)
}

func (b *Backend) digestSnapshot() []uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]uint64(nil), b.digests.sums[:]...)
}

// bucketRecords returns the records of a bucket with keys after `after`, in
// key order, up to about limit bytes; more reports a truncation.
func (b *Backend) bucketRecords(bucket int, after string, limit int) (recs []*wire.Record, more bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	keys := make([]string, 0, len(b.digests.keys[bucket]))
	for k := range b.digests.keys[bucket] {
		if k > after {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	size := 0
	for _, k := range keys {
		r := b.Recs[k]
		sz := len(r.Key) + len(r.Value) + 64
		if size+sz > limit && len(recs) > 0 {
			return recs, true
		}
		recs = append(recs, r)
		size += sz
	}
	return recs, false
}

// antiEntropy compares digests with the peer over conn and repairs every
// differing bucket in both directions. It returns the number of records
// repaired (applied here plus sent there).
func (b *Backend) antiEntropy(ctx context.Context, conn *registry.Conn) (int, error) {
	theirs, err := conn.Digests(ctx)
	if err != nil {
		return 0, err
	}
	if len(theirs) != numBuckets {
		return 0, fmt.Errorf("%w: peer sent %d digests, want %d", wire.ErrProtocol, len(theirs), numBuckets)
	}
	ours := b.digestSnapshot()
	repaired := 0
	for bk := range numBuckets {
		if ours[bk] == theirs[bk] {
			continue
		}
		peerRecs, err := conn.Bucket(ctx, bk)
		if err != nil {
			return repaired, err
		}
		peerVer := make(map[string]wire.Version, len(peerRecs))
		var apply []op
		b.mu.RLock()
		for _, r := range peerRecs {
			peerVer[r.Key] = r.Version
			if l := b.Recs[r.Key]; l == nil || l.Version.Less(r.Version) {
				apply = append(apply, op{kind: opApply, key: r.Key, rec: r})
			}
		}
		var push []*wire.Record
		for k := range b.digests.keys[bk] {
			l := b.Recs[k]
			if v, ok := peerVer[k]; !ok || v.Less(l.Version) {
				push = append(push, l)
			}
		}
		b.mu.RUnlock()
		if len(apply) > 0 {
			if _, err := b.write(ctx, true, apply...); err != nil {
				return repaired, err
			}
		}
		for _, ch := range wire.ChunkRecords(push, conn.MaxFrame()/2) {
			if len(ch) == 0 {
				continue
			}
			if err := conn.Replicate(ctx, ch); err != nil {
				return repaired, err
			}
		}
		repaired += len(apply) + len(push)
	}
	b.metrics.repairs.Add(float64(repaired))
	return repaired, nil
}

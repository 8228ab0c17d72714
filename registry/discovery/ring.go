package discovery

import (
	"cmp"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/shmreg/shmreg/registry"
)

// ring is a consistent-hash ring: replicas points per instance, placed by
// hashing the instance's id with the replica number, sorted by hash. A key
// belongs to the first point at or after its hash, wrapping around.
//
// Hashes and owners are kept in two arrays so the binary search touches
// only the hashes.
type ring struct {
	hashes []uint64
	owners []int32 // index into the instance slice, parallel to hashes
}

func newRing(ins []registry.Instance, replicas int) ring {
	type point struct {
		h     uint64
		owner int32
	}
	pts := make([]point, 0, len(ins)*replicas)
	var d xxhash.Digest
	var num [4]byte
	for i, in := range ins {
		for j := range replicas {
			d.Reset()
			_, _ = d.WriteString(in.ID)
			binary.LittleEndian.PutUint32(num[:], uint32(j))
			_, _ = d.Write(num[:])
			pts = append(pts, point{h: d.Sum64(), owner: int32(i)})
		}
	}
	// Equal hashes (vanishingly rare) are ordered by owner so the ring does
	// not depend on the instances' order.
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		return strings.Compare(ins[a.owner].ID, ins[b.owner].ID)
	})
	r := ring{hashes: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for i, p := range pts {
		r.hashes[i], r.owners[i] = p.h, p.owner
	}
	return r
}

// lookup returns the index of the instance owning key.
func (r ring) lookup(key string) int {
	h := xxhash.Sum64String(key)
	lo, hi := 0, len(r.hashes)
	for lo < hi { // first point with hash >= h
		mid := int(uint(lo+hi) >> 1)
		if r.hashes[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.hashes) {
		lo = 0
	}
	return int(r.owners[lo])
}

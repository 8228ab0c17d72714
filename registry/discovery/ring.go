package discovery

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/shmreg/shmreg/registry"
)

// ring is a consistent-hash ring: virtual nodes (points) per instance,
// placed by hashing the instance's id with the point's number, sorted by
// hash. A key belongs to the first point at or after its hash, wrapping
// around.
//
// An instance's share of the keys follows its share of the points, so an
// instance gets points in proportion to its weight (see ringPoints). Point j
// of an instance is the same whatever its count, so a change of weight adds
// or removes only that instance's last points and (while the median weight
// stays the same) moves keys only to or from it.
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
	counts := ringPoints(ins, replicas)
	total := 0
	for _, n := range counts {
		total += n
	}
	pts := make([]point, 0, total)
	var d xxhash.Digest
	var num [4]byte
	for i, in := range ins {
		for j := range counts[i] {
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

// maxWeightRatio bounds an instance's points at this many times those of a
// median-weight instance, so that one absurd weight (a typo, a hostile
// entry) cannot make every reader build a huge ring: the ring holds at most
// maxWeightRatio times the points it would hold unweighted.
const maxWeightRatio = 16

// ringPoints returns the number of points of each instance: replicas for
// an instance of the median weight, and in proportion to weight otherwise
// (rounded, at least 1, at most maxWeightRatio*replicas). A weight below 1
// counts as 1, as for WeightedRandom.
//
// The median, not the mean or the smallest weight, is the reference: it
// does not move when one heavy or light instance joins or leaves, so the
// other instances keep their points (and keys), and when every weight is
// equal each instance gets exactly replicas points.
func ringPoints(ins []registry.Instance, replicas int) []int {
	counts := make([]int, len(ins))
	if len(ins) == 0 {
		return counts
	}
	ws := make([]int, len(ins))
	for i, in := range ins {
		ws[i] = max(in.Weight, 1)
	}
	sorted := slices.Clone(ws)
	slices.Sort(sorted)
	median := float64(sorted[(len(sorted)-1)/2])
	for i, w := range ws {
		n := math.Round(float64(replicas) * float64(w) / median)
		counts[i] = int(min(max(n, 1), float64(maxWeightRatio*replicas)))
	}
	return counts
}

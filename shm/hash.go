package shm

import "encoding/binary"

// Hash is the region's key hash, defined in docs/LAYOUT.md so that C readers
// compute the same value. It reads eight bytes at a time and finishes with
// the MurmurHash3 finalizer, which spreads every input bit over the top bits
// the index uses for tags and the low bits it uses for slots.
func Hash(key []byte) uint64 {
	const (
		k1 = 0x9E3779B97F4A7C15
		k2 = 0xC2B2AE3D27D4EB4F
		k3 = 0xFF51AFD7ED558CCD
		k4 = 0xC4CEB9FE1A85EC53
	)
	h := uint64(k1) ^ uint64(len(key))*k2
	for len(key) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(key)) * k2
		h ^= h >> 29
		key = key[8:]
	}
	if len(key) > 0 {
		var c uint64
		for i, b := range key {
			c |= uint64(b) << (8 * i)
		}
		h = (h ^ c) * k2
		h ^= h >> 29
	}
	h ^= h >> 33
	h *= k3
	h ^= h >> 33
	h *= k4
	h ^= h >> 33
	return h
}

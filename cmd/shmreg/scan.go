package main

import (
	"bytes"

	"github.com/shmreg/shmreg/shm"
)

// The region commands never write output from inside a read. A read holds
// one of the region's reader slots for as long as it runs, and the writer
// forces a slot held past the read lease (2s by default) free, failing the
// read with ErrEvicted; a command that printed from inside a read would be
// evicted by any consumer slower than the lease (`shmreg ls | less`, a
// stalled pipe). So each read copies what is to be printed, and printing
// happens after the read has ended.

// entry is one key and value copied out of the region.
type entry struct {
	key, value []byte
}

// chunkLimit bounds what one read of scanChunks copies.
type chunkLimit struct {
	entries int // at most this many entries
	bytes   int // at most this many key and value bytes, except that a chunk holds at least one entry
}

// listChunk is the chunk the region commands use: it copies in a few
// milliseconds (far within the lease), and keeps a command's memory to a
// few MiB however much the prefix holds. One value may exceed it (values
// go up to shm.MaxValueLen); it is then a chunk of its own.
func listChunk() chunkLimit { return chunkLimit{entries: 16384, bytes: 4 << 20} }

// scanChunks calls emit with every entry under prefix, in key order, a
// chunk at a time: each chunk is copied inside one read of the region, and
// emit runs after that read has ended, so it may take as long as it likes.
// It stops at emit's first error and returns it.
//
// The next chunk continues after the last key emitted. Entries committed
// between chunks are seen or not, as with a single shm.Reader.Scan; no key
// is emitted twice and keys are emitted in order.
//
// shm.Reader.Scan has no start key, so each read after the first walks the
// prefix from its beginning and skips what was emitted: a chunk costs the
// position it resumes at (a few milliseconds per hundred thousand entries)
// rather than a seek. A Scan that started after a given key would remove
// the walk.
func scanChunks(r *shm.Reader, prefix []byte, limit chunkLimit, emit func([]entry) error) error {
	var last []byte // the last key emitted; keys are never empty, so nil is "none yet"
	for {
		var chunk []entry
		size, more := 0, false
		err := r.Scan(prefix, func(k, v []byte) bool {
			if last != nil && bytes.Compare(k, last) <= 0 {
				return true
			}
			if len(chunk) == limit.entries || len(chunk) > 0 && size+len(k)+len(v) > limit.bytes {
				more = true
				return false
			}
			chunk = append(chunk, entry{key: bytes.Clone(k), value: bytes.Clone(v)})
			size += len(k) + len(v)
			return true
		})
		if err != nil {
			return err
		}
		if len(chunk) == 0 {
			return nil
		}
		if err := emit(chunk); err != nil {
			return err
		}
		if !more {
			return nil
		}
		last = chunk[len(chunk)-1].key
	}
}

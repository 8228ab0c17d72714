// Package shm is a shmreg region: entries in a memory-mapped file that one
// writer (the agent) changes and any number of processes read straight from
// shared memory, with no socket, no system call and no lock on a lookup.
//
// # Which call to use
//
// A goroutine that looks keys up in a loop (a proxy resolving every call, a
// balancer picking per request) should read through a Session of its own:
//
//	s, err := r.Session() // one per goroutine; holds a reader slot until Close
//	defer s.Close()
//	err = s.View(key, func(v []byte) error { ... }) // v valid only inside fn
//
// Reader.View and Reader.Get do the same lookup but take a reader slot from
// a shared pool and give it back on every call, a fixed cost that matters
// only when the entry is in the cache (docs/BENCHMARKS.md, "The lookup
// path", has the figures). They are the calls for code that reads now and
// then. The discovery package
// (registry/discovery) caches decoded instances and checks for changes with
// one atomic load per call, so Instances and the pickers read shared memory
// only after a commit.
//
// Get and Session.Get return copies; View passes the bytes as they lie in
// the mapping, valid only until its callback returns. Scan iterates a
// prefix in key order; Snapshot gives a view consistent across many keys;
// Wait blocks until the next commit.
//
// # Safety
//
// Readers map the data file read-only and check every offset they follow,
// so a corrupt or hostile file yields ErrCorrupt, not a crash; so does a
// file cut short under a lookup's walk of the index and nodes (the value
// bytes a View callback reads are not guarded: the writer never shortens a
// file, and only its owner could). A read announces itself in a
// reader slot of the control file (NAME.ctl) so the writer never reuses
// memory it may still see; a read that outlives the read lease is evicted
// (ErrEvicted). When the writer rebuilds the region into a new file, readers
// move to it at their next call. docs/LAYOUT.md gives the layout and the
// protocol byte by byte; include/shmreg.h is the same for C.
package shm

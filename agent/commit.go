package agent

import "github.com/shmreg/shmreg/shm"

// regionCommit is one commit the follower makes to the region: changes, in
// order, and the place recorded with them. Unlike shm.Batch it owns what it
// holds: keys are strings, and values are the slices of records received
// from the center, never the region's own bytes (which are valid only
// inside a read). So a commit the region refused can be kept and made again
// later, unchanged (see regionFault).
type regionCommit struct {
	ops    []regionOp
	center string // place: the center the region follows
	rev    uint64 // place: the revision applied (0: unknown, see follower.place)
}

type regionOp struct {
	key   string
	value []byte
	del   bool
}

func (c *regionCommit) put(key string, value []byte) {
	c.ops = append(c.ops, regionOp{key: key, value: value})
}

func (c *regionCommit) delete(key string) {
	c.ops = append(c.ops, regionOp{key: key, del: true})
}

func (c *regionCommit) setPlace(center string, rev uint64) { c.center, c.rev = center, rev }

// batch is the commit as the region writer takes it.
func (c *regionCommit) batch() *shm.Batch {
	var b shm.Batch
	for _, op := range c.ops {
		if op.del {
			b.Delete([]byte(op.key))
		} else {
			b.Put([]byte(op.key), op.value)
		}
	}
	b.SetPlace(c.center, c.rev)
	return &b
}

// commit writes c to the region, then runs done, the bookkeeping of the
// caller for a commit made (nil: none). If the region refuses c, the
// follower keeps c and done as its fault (see regionFault) and commit
// returns an error wrapping ErrRegion: the caller stops taking batches, and
// done runs once a retry gets c through.
func (f *follower) commit(c *regionCommit, done func()) error {
	if err := f.a.w.Commit(c.batch()); err != nil {
		return f.refused(c, done, err)
	}
	f.committed(c, done)
	return nil
}

// committed counts a commit that went through and runs its bookkeeping.
func (f *follower) committed(c *regionCommit, done func()) {
	f.a.metrics.applied.Add(float64(len(c.ops)))
	f.a.metrics.held.Set(float64(len(f.held)))
	if done != nil {
		done()
	}
}

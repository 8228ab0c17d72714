package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// regionFault is a commit the region refused, kept to be made again: the
// region is full and cannot grow (shm.ErrFull; shm.ErrNoSpace when its
// file system is full), or its file system failed.
//
// A region the agent cannot write is not a lost center. The center did
// nothing wrong, and another connection or a snapshot would only bring
// more of what the region cannot take: an agent that treated it as a lost
// center reconnected at once and was sent a snapshot of everything each
// time, about a hundred times a second. So the follower ends the
// connection (the center stops pushing, and nothing piles up unread in the
// subscription's queue, as it would if the agent kept the connection and
// stopped reading) and retries the commit locally, with backoff, until it
// goes through; then it reconnects to the same center and resumes from the
// revision of that commit (or takes a snapshot where it could not resume
// anyway; see follow). While the region stays unwritable the agent makes
// no connection and is pushed nothing more; readers keep reading what the
// region held. Each failure is counted (Status.FailedCommits,
// shmreg_agent_region_commit_failures_total) and the fault is reported
// (Status.RegionError, shmreg_agent_region_degraded); the log warns at the
// first failure, then at most once a minute, and once when it is over.
//
// Why making the same commit again is right: a failed commit leaves a
// prefix of its changes applied (each change whole; see shm.Writer.Commit),
// and nothing else is written to the region while a fault is kept (the
// follower makes no other commit, and refresh is refused), so the region
// holds the state the commit was built against plus a prefix of the
// commit. Making all its changes again, in order, leaves each key with the
// last change the commit makes to it: exactly the state the commit meant.
// The follower's own state (place, complete prefixes, held deletions)
// already describes that state, so it is true again once the commit is
// through, and done finishes the bookkeeping (saved subscription, answered
// subscribers, status).
//
// Meanwhile the region records revision 0 (a commit of the place alone,
// which needs no room), so that an agent restarted before the retry
// succeeds takes a snapshot rather than resuming from a revision the
// region, holding part of a newer commit, no longer matches.
type regionFault struct {
	commit   *regionCommit
	done     func()
	err      error     // the last failure
	since    time.Time // the first failure
	failures int       // failed attempts at this commit
	logged   time.Time // when a failure was last logged
}

// regionLogEvery bounds how often a region that stays unwritable is logged.
const regionLogEvery = time.Minute

// error is the error the follower reports while the fault lasts.
func (ft *regionFault) error() error { return fmt.Errorf("%w: %w", ErrRegion, ft.err) }

// refused records a commit the region refused (see regionFault) and
// returns the error for the caller.
func (f *follower) refused(c *regionCommit, done func(), err error) error {
	now := time.Now()
	ft := &regionFault{commit: c, done: done, err: err, since: now, failures: 1, logged: now}
	f.fault = ft
	f.a.metrics.commitFailures.Inc()
	f.a.metrics.degraded.Set(1)
	f.a.updateStatus(func(s *Status) {
		s.RegionError, s.RegionErrorSince = err.Error(), now
		s.FailedCommits++
	})
	f.a.log.Warn("the region cannot be written: readers keep its last data; retrying with backoff, without a connection (further failures are logged at most once a minute)",
		"err", err, "center", c.center, "revision", c.rev)
	center, _ := f.a.w.Place()
	var unplaced shm.Batch
	unplaced.SetPlace(center, 0)
	if perr := f.a.w.Commit(&unplaced); perr != nil {
		f.a.log.Warn("the region's place cannot be cleared either: an agent restarted now resumes from it", "err", perr)
	}
	return ft.error()
}

// mend makes the kept commit again, waiting retry's next delay before each
// attempt and serving control requests meanwhile, until it goes through or
// ctx ends.
func (f *follower) mend(ctx context.Context, retry *backoff) {
	for f.fault != nil {
		f.idle(ctx, retry.next())
		if ctx.Err() != nil {
			return
		}
		ft := f.fault
		if err := f.a.w.Commit(ft.commit.batch()); err != nil {
			ft.err = err
			ft.failures++
			f.a.metrics.commitFailures.Inc()
			f.a.updateStatus(func(s *Status) {
				s.RegionError = err.Error()
				s.FailedCommits++
			})
			if now := time.Now(); now.Sub(ft.logged) >= regionLogEvery {
				ft.logged = now
				f.a.log.Warn("the region still cannot be written", "err", err, "failures", ft.failures, "since", ft.since)
			}
			continue
		}
		f.fault = nil
		f.a.metrics.degraded.Set(0)
		f.a.updateStatus(func(s *Status) {
			s.RegionError, s.RegionErrorSince = "", time.Time{}
		})
		f.a.log.Info("the region can be written again", "failures", ft.failures, "after", time.Since(ft.since).Round(time.Millisecond))
		f.committed(ft.commit, ft.done)
	}
}

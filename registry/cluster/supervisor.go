package cluster

import (
	"context"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// The promotion supervisor keeps the cluster's voter count when a voter
// is lost. One center at a time supervises (an etcd election under
// Prefix+"supervisor/"); every SuperviseInterval it asks every member for
// its status. A voter that has not answered (or has known no leader) for
// PromoteAfter is replaced: a healthy listener that has caught up with the
// leader's raft log is promoted (etcd's MemberPromote, which itself
// refuses a learner far behind), then the dead voter is removed. It does
// nothing that would leave fewer healthy voters than a quorum: no
// promotion without a caught-up listener, no removal before a promotion,
// one replacement at a time, and never while no leader is known.

// maxPromoteLag is how many raft entries a listener may be behind the
// leader and still be promoted.
const maxPromoteLag = 1000

// sessionTTL is how long a dead supervisor keeps the election.
const sessionTTL = 5

func (b *Backend) superviseLoop() {
	for b.ctx.Err() == nil {
		sess, err := concurrency.NewSession(b.cli, concurrency.WithTTL(sessionTTL), concurrency.WithContext(b.ctx))
		if err != nil {
			select {
			case <-time.After(time.Second):
			case <-b.ctx.Done():
			}
			continue
		}
		el := concurrency.NewElection(sess, b.opts.Prefix+"supervisor/")
		if err := el.Campaign(b.ctx, b.opts.Name); err != nil {
			sess.Close()
			continue
		}
		b.log.Info("supervisor: elected; watching member health", "promote_after", b.opts.PromoteAfter)
		b.metrics.supervisor.Set(1)
		b.supervise(sess)
		b.metrics.supervisor.Set(0)
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		el.Resign(rctx)
		cancel()
		sess.Close()
	}
}

// supervise runs while this center holds the election.
func (b *Backend) supervise(sess *concurrency.Session) {
	t := time.NewTicker(b.opts.SuperviseInterval)
	defer t.Stop()
	downSince := make(map[uint64]time.Time)
	warned := make(map[uint64]bool)
	promoted := make(map[uint64]bool) // dead voters already replaced, whose removal failed
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-sess.Done():
			b.log.Warn("supervisor: lost the election session")
			return
		case <-t.C:
		}
		st, err := ReadStatus(b.ctx, b.cli, min(b.opts.SuperviseInterval, time.Second))
		if err != nil {
			continue
		}
		now := time.Now()
		switch act, dead, pick := b.decide(st, now, downSince, warned, promoted); act {
		case actPromote:
			b.replace(dead, pick, now.Sub(downSince[dead.ID]), promoted)
		case actRemove:
			b.remove(dead, promoted)
		}
	}
}

// action is what the supervisor does after a look at the members.
type action int

const (
	actNone    action = iota
	actPromote        // promote pick, then remove dead
	actRemove         // remove dead (its replacement was promoted already)
)

// decide updates what the supervisor remembers of the members from st and
// says what to do now (see the comment at the top of this file).
func (b *Backend) decide(st Status, now time.Time, downSince map[uint64]time.Time, warned, promoted map[uint64]bool) (act action, dead, pick MemberStatus) {
	voters, healthyVoters := 0, 0
	var leaderIndex uint64
	seen := make(map[uint64]bool)
	for _, m := range st.Members {
		seen[m.ID] = true
		if m.Leader {
			leaderIndex = m.RaftIndex
		}
		if m.Healthy {
			if _, was := downSince[m.ID]; was {
				b.log.Info("supervisor: member answers again", "member", m.Name, "role", m.Role)
			}
			delete(downSince, m.ID)
			delete(warned, m.ID)
		} else if _, was := downSince[m.ID]; !was {
			downSince[m.ID] = now
			b.log.Warn("supervisor: member unreachable", "member", m.Name, "role", m.Role, "err", m.Err)
			if m.Role == "voter" {
				b.metrics.steps.WithLabelValues("voter_down", "ok").Inc()
			}
		}
		if m.Role == "voter" {
			voters++
			if m.Healthy {
				healthyVoters++
			}
		}
	}
	for id := range downSince {
		if !seen[id] {
			delete(downSince, id)
			delete(promoted, id)
		}
	}
	if st.Leader == "" {
		return actNone, dead, pick // nothing can change membership now
	}
	for _, dead := range st.Members {
		since, down := downSince[dead.ID]
		if dead.Role != "voter" || !down || now.Sub(since) < b.opts.PromoteAfter {
			continue
		}
		if promoted[dead.ID] {
			// Its replacement was promoted; the removal failed: retry it
			// (etcd's strict reconfiguration check refuses it if it would
			// lose the quorum).
			return actRemove, dead, pick
		}
		var listener *MemberStatus
		for i := range st.Members {
			l := &st.Members[i]
			if l.Role == "listener" && l.Healthy && l.Applied+maxPromoteLag >= leaderIndex {
				listener = l
				break
			}
		}
		if listener == nil {
			if !warned[dead.ID] {
				warned[dead.ID] = true
				b.metrics.steps.WithLabelValues("refused", "ok").Inc()
				b.log.Warn("supervisor: a voter is down but no listener is healthy and caught up; not promoting", "voter", dead.Name, "down_for", now.Sub(since).Round(time.Millisecond))
			}
			return actNone, dead, pick
		}
		// After the promotion: voters+1 voters, healthyVoters+1 healthy;
		// after the removal: voters, healthyVoters+1. Both must keep a quorum.
		if healthyVoters+1 < (voters+1)/2+1 || healthyVoters+1 < voters/2+1 {
			b.metrics.steps.WithLabelValues("refused", "ok").Inc()
			b.log.Warn("supervisor: replacing the voter would not keep a healthy quorum; not promoting", "voter", dead.Name,
				"voters", voters, "healthy_voters", healthyVoters)
			return actNone, dead, pick
		}
		return actPromote, dead, *listener // one replacement a step: look again with fresh status
	}
	return actNone, dead, pick
}

// replace promotes listener and removes the dead voter.
func (b *Backend) replace(dead, listener MemberStatus, downFor time.Duration, promoted map[uint64]bool) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	b.log.Warn("supervisor: promoting a listener to replace a lost voter", "voter", dead.Name, "down_for", downFor.Round(time.Millisecond),
		"listener", listener.Name, "listener_applied", listener.Applied)
	if _, err := b.cli.MemberPromote(ctx, listener.ID); err != nil {
		b.metrics.steps.WithLabelValues("promoted", "error").Inc()
		b.log.Warn("supervisor: promote failed", "listener", listener.Name, "err", err)
		return
	}
	b.metrics.steps.WithLabelValues("promoted", "ok").Inc()
	b.log.Warn("supervisor: listener promoted to voter", "member", listener.Name)
	promoted[dead.ID] = true
	b.remove(dead, promoted)
}

// remove removes a dead voter whose replacement was promoted.
func (b *Backend) remove(dead MemberStatus, promoted map[uint64]bool) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if _, err := b.cli.MemberRemove(ctx, dead.ID); err != nil {
		b.metrics.steps.WithLabelValues("removed", "error").Inc()
		b.log.Warn("supervisor: remove of the lost voter failed (retried next step)", "voter", dead.Name, "err", err)
		return
	}
	delete(promoted, dead.ID)
	b.metrics.steps.WithLabelValues("removed", "ok").Inc()
	b.log.Warn("supervisor: lost voter removed", "member", dead.Name)
}

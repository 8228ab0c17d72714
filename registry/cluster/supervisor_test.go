package cluster

import (
	"testing"
	"time"
)

// The supervisor's decisions, on made-up member lists: it replaces a voter
// down for PromoteAfter by a healthy, caught-up listener, and otherwise
// does nothing.
func TestSupervisorDecides(t *testing.T) {
	voter := func(id uint64, healthy bool) MemberStatus {
		return MemberStatus{ID: id, Name: string(rune('a' + id)), Role: "voter", Healthy: healthy, RaftIndex: 5000, Applied: 5000}
	}
	listener := func(id uint64, healthy bool, applied uint64) MemberStatus {
		return MemberStatus{ID: id, Name: string(rune('a' + id)), Role: "listener", Healthy: healthy, RaftIndex: applied, Applied: applied}
	}
	leader := func(m MemberStatus) MemberStatus { m.Leader = true; return m }
	for _, tc := range []struct {
		name    string
		members []MemberStatus
		down    time.Duration // how long the unhealthy ones have been down
		want    action
		pick    uint64
	}{
		{"all healthy", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, true), listener(4, true, 5000)}, time.Hour, actNone, 0},
		{"a voter down, not long enough", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, false), listener(4, true, 5000)}, time.Second, actNone, 0},
		{"a voter down long enough", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, false), listener(4, true, 5000)}, time.Minute, actPromote, 4},
		{"the listener far behind", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, false), listener(4, true, 10)}, time.Minute, actNone, 0},
		{"the listener down too", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, false), listener(4, false, 5000)}, time.Minute, actNone, 0},
		{"no listener", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, false)}, time.Minute, actNone, 0},
		{"no leader (no quorum)", []MemberStatus{voter(1, true), voter(2, false), voter(3, false), listener(4, true, 5000)}, time.Minute, actNone, 0},
		{"two of five down: the promoted listener keeps a quorum", []MemberStatus{leader(voter(1, true)), voter(2, true), voter(3, true), voter(5, false), voter(6, false), listener(4, true, 5000)}, time.Minute, actPromote, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Backend{opts: Options{PromoteAfter: 10 * time.Second}}
			b.opts, _ = b.opts.withDefaults()
			b.log = b.opts.Logger
			b.metrics, _ = newClusterMetrics(nil)
			st := Status{Members: tc.members}
			for _, m := range tc.members {
				if m.Leader {
					st.Leader = m.Name
				}
			}
			now := time.Now()
			down := map[uint64]time.Time{}
			for _, m := range tc.members {
				if !m.Healthy {
					down[m.ID] = now.Add(-tc.down)
				}
			}
			act, dead, pick := b.decide(st, now, down, map[uint64]bool{}, map[uint64]bool{})
			if act != tc.want || (act == actPromote && (pick.ID != tc.pick || dead.Healthy || dead.Role != "voter")) {
				t.Fatalf("decided %v (dead %s, pick %s), want %v (pick %d)", act, dead.Name, pick.Name, tc.want, tc.pick)
			}
		})
	}
}

package pair

import (
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// A write id (wid) names one write of a client, the same on every attempt:
// the SDK sends a write to one center and, when the answer is lost, sends
// it again to the other. Without it the retry is a new write, stamped by a
// clock that may be behind the first attempt's, and the client's next
// write (ordered after the retry only) can lose to the first attempt when
// it arrives by replication: an acknowledged write gone.
//
// Each center remembers, for retryWindow, the wids of the writes it
// committed and applied:
//
//   - a retry of a write the center already holds is answered with that
//     write's version, and nothing is written;
//   - when the first attempt of a write that this center committed as a
//     retry arrives from the peer, stamped above the retry, and the key has
//     moved on here since, the center stamps its current record anew
//     (above the first attempt) instead of letting the first attempt win,
//     and replicates that, so that both centers keep what came after.

// retryWindow is how long a write id is remembered; retryCap bounds how
// many are.
const (
	retryWindow = 10 * time.Minute
	retryCap    = 1 << 17
)

type retryEntry struct {
	key     string
	version wire.Version
	at      time.Time
}

// retryTable is owned by the committer goroutine: no lock.
type retryTable struct {
	byWID map[string]retryEntry
	queue []string // wids in the order they were added, for expiry
}

func newRetryTable() *retryTable { return &retryTable{byWID: make(map[string]retryEntry)} }

func (t *retryTable) get(wid string) (retryEntry, bool) {
	e, ok := t.byWID[wid]
	return e, ok
}

func (t *retryTable) add(wid string, e retryEntry) {
	if _, ok := t.byWID[wid]; !ok {
		t.queue = append(t.queue, wid)
	}
	t.byWID[wid] = e
	t.expire(e.at)
}

// expire forgets ids older than retryWindow, and the oldest beyond retryCap.
func (t *retryTable) expire(now time.Time) {
	n := 0
	for n < len(t.queue) {
		e, ok := t.byWID[t.queue[n]]
		if ok && now.Sub(e.at) < retryWindow && len(t.queue)-n <= retryCap {
			break
		}
		delete(t.byWID, t.queue[n])
		n++
	}
	if n > 0 {
		t.queue = append(t.queue[:0], t.queue[n:]...)
	}
}

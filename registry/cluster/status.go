package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Status is the cluster as its members report it.
type Status struct {
	ClusterID string         `json:"cluster_id"`
	Leader    string         `json:"leader"` // the leader's name, "" if none is known
	Members   []MemberStatus `json:"members"`
}

// MemberStatus is one member: its role, and what it says of itself when
// asked on its client URL.
type MemberStatus struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	Role       string   `json:"role"` // "voter" or "listener"
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	Healthy    bool     `json:"healthy"` // answered, and knows a leader
	Leader     bool     `json:"leader"`
	RaftTerm   uint64   `json:"raft_term,omitempty"`
	RaftIndex  uint64   `json:"raft_index,omitempty"`
	Applied    uint64   `json:"raft_applied,omitempty"`
	Err        string   `json:"error,omitempty"`
}

// ReadStatus lists the members and asks each for its status (in
// parallel, each bounded by timeout).
func ReadStatus(ctx context.Context, cli *clientv3.Client, timeout time.Duration) (Status, error) {
	lctx, cancel := context.WithTimeout(ctx, 2*timeout)
	ml, err := cli.MemberList(lctx)
	cancel()
	if err != nil {
		return Status{}, fmt.Errorf("cluster: list members: %w", err)
	}
	st := Status{ClusterID: fmt.Sprintf("etcd-%016x", ml.Header.ClusterId), Members: make([]MemberStatus, len(ml.Members))}
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		ms := &st.Members[i]
		*ms = MemberStatus{ID: m.ID, Name: m.Name, Role: "voter", PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs}
		if m.IsLearner {
			ms.Role = "listener"
		}
		if len(m.ClientURLs) == 0 {
			ms.Err = "not started"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			s, err := cli.Status(sctx, m.ClientURLs[0])
			if err != nil {
				ms.Err = err.Error()
				return
			}
			ms.RaftTerm, ms.RaftIndex, ms.Applied = s.RaftTerm, s.RaftIndex, s.RaftAppliedIndex
			ms.Healthy = s.Leader != 0 && len(s.Errors) == 0
			ms.Leader = s.Leader == s.Header.MemberId
			if len(s.Errors) > 0 {
				ms.Err = fmt.Sprint(s.Errors)
			}
		}()
	}
	wg.Wait()
	for _, m := range st.Members {
		if m.Leader {
			st.Leader = m.Name
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st, nil
}

// Status is the cluster's status as this center sees it.
func (b *Backend) Status(ctx context.Context) (Status, error) {
	return ReadStatus(ctx, b.cli, time.Second)
}

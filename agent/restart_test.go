package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRestartResumes: an agent on an existing region resumes from the saved
// revision (no snapshot) and catches up with what changed while it was away.
func TestRestartResumes(t *testing.T) {
	ca, _ := testPair(t)
	admin := dialAdmin(t, ca.Addr().String())
	ctx := context.Background()
	dir := t.TempDir()
	opts := testOptions(dir, []string{ca.Addr().String()}, "cfg/")
	opts.Metrics = "127.0.0.1:0"
	want := map[string]string{}
	for i := range 5 {
		k := fmt.Sprint("cfg/k", i)
		if _, err := admin.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
		want[k] = "v"
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	path := a.Status().Region
	eventually(t, "filled", sameAs(t, path, want))
	resp, err := http.Get("http://" + a.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"shmreg_agent_entries 5", "shmreg_agent_apply_seconds_count", "shmreg_agent_connected 1", "shmreg_agent_region_free_bytes"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	stopAgent(t, a)

	// Changes while no agent runs.
	if _, err := admin.Put(ctx, "cfg/k1", []byte("changed")); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Delete(ctx, "cfg/k2"); err != nil {
		t.Fatal(err)
	}
	want["cfg/k1"] = "changed"
	delete(want, "cfg/k2")
	opts.Metrics = ""
	b := startAgent(t, opts)
	eventually(t, "caught up", sameAs(t, path, want))
	time.Sleep(20 * time.Millisecond)
	if st := b.Status(); !st.LastResync.At.IsZero() || st.Failovers != 0 {
		t.Fatalf("restart took a snapshot instead of resuming: %+v", st)
	}
}

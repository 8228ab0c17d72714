package main

import (
	"strings"
	"testing"
)

// TestClusterMisconfigured: cluster flags that cannot work exit 2 (usage)
// or 1 (a cluster that cannot be formed as given) with the reason, before
// anything serves.
func TestClusterMisconfigured(t *testing.T) {
	data := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"center", "--insecure", "--data", data, "--name", "a"}, 2, "--name needs --cluster"},
		{[]string{"center", "--insecure", "--cluster", "--data", data}, 2, "--cluster needs --name"},
		{[]string{"center", "--insecure", "--cluster", "--name", "a", "--raft-listen", "http://127.0.0.1:1"}, 2, "--cluster needs --data"},
		{[]string{"center", "--insecure", "--cluster", "--name", "a", "--data", data, "--peer", "127.0.0.1:1"}, 2, "--peer is for the mirrored pair, not --cluster"},
		{[]string{"center", "--insecure", "--cluster", "--name", "a", "--etcd", "http://127.0.0.1:1", "--raft-listen", "http://127.0.0.1:1"}, 2, "--raft-listen is for an embedded member; --etcd uses yours"},
		{[]string{"center", "--insecure", "--cluster", "--name", "zz", "--data", data, "--listen", "127.0.0.1:0",
			"--raft-listen", "http://127.0.0.1:1", "--initial-cluster", "a=http://127.0.0.1:1"}, 1, `this center's name "zz" is not in --initial-cluster`},
		{[]string{"center", "--insecure", "--cluster", "--name", "l", "--data", data, "--listen", "127.0.0.1:0",
			"--raft-listen", "http://127.0.0.1:1", "--listener"}, 1, "a listener's first start needs the client URLs of the cluster it joins (--join)"},
	} {
		r := runCLI(t, tc.args...)
		r.wantExit(t, tc.code)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}

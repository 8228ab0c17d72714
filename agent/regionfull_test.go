package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shmreg/shmreg/shm"
)

// TestRegionFullBacksOff: an agent whose region cannot grow because its
// file system is full does not treat that as a lost center. While the file
// system stays full it makes no new connection and is pushed each change at
// most once, its readers keep the region's last good data, and it reports
// the fault (status and metrics); once space returns it catches up with the
// center.
//
// The agent runs as a child process in a user and mount namespace of its
// own, with its region on a 4 MiB tmpfs that only it mounts; this process
// reaches that file system through /proc/<pid>/root, to read the region and
// to fill and free the space.
func TestRegionFullBacksOff(t *testing.T) {
	reg := prometheus.NewRegistry()
	ca, cb := testPairMetrics(t, reg)
	admin := dialAdmin(t, ca.Addr().String())
	ctx := context.Background()
	want := map[string]string{}
	put := func(k, v string) {
		t.Helper()
		if _, err := admin.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	for i := range 20 {
		put(fmt.Sprintf("cfg/small%02d", i), fmt.Sprint("v", i))
	}
	good := maps.Clone(want)
	// The pair is linked both ways (each center's replicator dialed the
	// other), so that no peer connection falls in the counts below.
	eventually(t, "replicated", func() error {
		if n := len(cb.List("cfg/")); n != len(want) {
			return fmt.Errorf("b holds %d records", n)
		}
		return nil
	})

	mnt := t.TempDir() // the tmpfs mount point, in the child's namespace
	control := filepath.Join(t.TempDir(), "agent.sock")
	ag, err := spawnIn(t, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}, "agent", "SHMREG_T_DIR="+mnt, "SHMREG_T_TMPFS=4m", "SHMREG_T_REGION_SIZE="+fmt.Sprint(256<<10),
		"SHMREG_T_CENTERS="+ca.Addr().String()+","+cb.Addr().String(), "SHMREG_T_PREFIXES=cfg/",
		"SHMREG_T_CONTROL="+control, "SHMREG_T_METRICS=1")
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) {
		// EPERM: user namespaces are not allowed; ENOSPC: their limit
		// (user.max_user_namespaces) is reached.
		t.Skipf("this machine does not let the test create a user namespace, so no private tmpfs can be mounted: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := strings.TrimPrefix(ag.ready(), "READY ")
	root := fmt.Sprintf("/proc/%d/root%s", ag.cmd.Process.Pid, mnt)
	region := filepath.Join(root, "region")
	eventually(t, "region filled", sameAs(t, region, want))
	r, err := shm.Open(region, shm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cc := dialControl(t, control)
	status := func() *Status {
		t.Helper()
		resp := cc.do(t, `{"op":"status"}`)
		if !resp.OK || resp.Status == nil {
			t.Fatalf("status: %+v", resp)
		}
		return resp.Status
	}

	// The file system fills up (something else took /dev/shm); then 150
	// values of 4 KiB are written, one every 10ms, far more than the
	// region's free pool (256 KiB in all), so the region needs a larger file
	// it cannot get.
	filler := filepath.Join(root, "filler")
	fillFileSystem(t, filler)
	conns0 := counterSum(t, reg, "shmreg_center_connections_total")
	pushed0 := counterSum(t, reg, "shmreg_center_pushed_records_total")
	const bigWrites = 150
	big := strings.Repeat("x", 4<<10)
	for i := range bigWrites {
		put(fmt.Sprintf("cfg/big%03d", i), big)
		time.Sleep(10 * time.Millisecond) // the writes go on for about 1.5s
	}
	// The fault is reported.
	eventually(t, "the region fault is reported", func() error {
		st := status()
		m := scrapeMetrics(t, metricsAddr)
		switch {
		case !strings.Contains(st.RegionError, "no space") || st.Connected:
			return fmt.Errorf("status region_error %q connected %v", st.RegionError, st.Connected)
		case st.RegionErrorSince.IsZero() || st.FailedCommits == 0:
			return fmt.Errorf("status region_error_since %v failed_commits %d", st.RegionErrorSince, st.FailedCommits)
		case m["shmreg_agent_region_degraded"] != 1 || m["shmreg_agent_region_commit_failures_total"] < 1:
			return fmt.Errorf("metrics region_degraded %v region_commit_failures_total %v",
				m["shmreg_agent_region_degraded"], m["shmreg_agent_region_commit_failures_total"])
		}
		return nil
	})
	conns1 := counterSum(t, reg, "shmreg_center_connections_total")
	pushed1 := counterSum(t, reg, "shmreg_center_pushed_records_total")
	// Readers still see the last good data: everything the region held
	// before the file system filled, unchanged. The region records no
	// revision while it may hold part of a commit, so that an agent
	// restarted now would take a snapshot.
	for k, v := range good {
		if got, err := r.Get([]byte(k)); err != nil || string(got) != v {
			t.Errorf("while the region is full, %s = %q, %v; want %q", k, got, err, v)
		}
	}
	if center, rev := r.Place(); center != ca.ID() || rev != 0 {
		t.Errorf("while the region is full it records %s@%d, want %s@0", center, rev, ca.ID())
	}
	// A refresh, which would write the region, is refused with the reason.
	if resp := cc.do(t, `{"op":"refresh","key":"cfg/small00"}`); resp.OK || !strings.Contains(resp.Error, "the region cannot be written") {
		t.Errorf("refresh while the region is full: %+v", resp)
	}

	// Space returns: the agent catches up with the center.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the region catches up once space returns", sameAs(t, region, want))
	eventually(t, "the fault is cleared", func() error {
		st := status()
		if m := scrapeMetrics(t, metricsAddr); st.RegionError != "" || m["shmreg_agent_region_degraded"] != 0 {
			return fmt.Errorf("status region_error %q, metric region_degraded %v", st.RegionError, m["shmreg_agent_region_degraded"])
		}
		return nil
	})
	conns2 := counterSum(t, reg, "shmreg_center_connections_total")
	pushed2 := counterSum(t, reg, "shmreg_center_pushed_records_total")
	t.Logf("while the file system was full (%d writes, one every 10ms): %v new connections, %v records pushed; catching up: %v connections, %v records pushed",
		bigWrites, conns1-conns0, pushed1-pushed0, conns2-conns1, pushed2-pushed1)

	// The bounds. While the file system is full the agent does not
	// reconnect (one connection is allowed for a center connection lost for
	// another reason) and no change is pushed to it twice. Catching up takes
	// one connection (two allowed, as above) and at most one copy of
	// everything under its prefixes (a resume sends less).
	if d := conns1 - conns0; d > 1 {
		t.Errorf("the agent made %v connections while its region was full, want at most 1", d)
	}
	if d := pushed1 - pushed0; d > bigWrites {
		t.Errorf("the centers pushed %v records while the region was full, want at most the %d written", d, bigWrites)
	}
	if d := conns2 - conns1; d > 2 {
		t.Errorf("the agent made %v connections to catch up, want at most 2", d)
	}
	if d := pushed2 - pushed1; d > float64(len(want)) {
		t.Errorf("the centers pushed %v records for the catch-up, want at most the %d there are", d, len(want))
	}
}

// fillFileSystem writes a file at path until its file system is full.
func fillFileSystem(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for _, chunk := range []int{64 << 10, 4 << 10} {
		for {
			if _, err := f.Write(buf[:chunk]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}

// scrapeMetrics reads the unlabelled samples an agent serves on /metrics.
func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

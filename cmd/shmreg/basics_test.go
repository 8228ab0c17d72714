package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/shmreg/shmreg/shm"
)

// TestVersion: 'shmreg --version' and 'shmreg version' print the module
// version and the commit the binary was built from.
func TestVersion(t *testing.T) {
	a, b := runCLI(t, "--version"), runCLI(t, "version")
	a.wantExit(t, 0)
	b.wantExit(t, 0)
	if a.stdout != b.stdout || !regexp.MustCompile(`^shmreg \S+ \(commit \S+.*; go\S+\)\n$`).MatchString(a.stdout) {
		t.Fatalf("--version %q, version %q", a.stdout, b.stdout)
	}
	// The commit is the one Go stamped in the binary, if it did (not with
	// -buildvcs=false, or outside a git checkout).
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "version", "-m", shmregBinary(t)).Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := "unknown"
	if m := regexp.MustCompile(`\tbuild\tvcs.revision=(\S+)`).FindSubmatch(out); m != nil {
		rev = string(m[1])
	}
	if !strings.Contains(a.stdout, "(commit "+rev) {
		t.Errorf("version %q does not name the stamped commit %s", a.stdout, rev)
	}
	runCLI(t, "version", "extra").wantExit(t, 2)
}

// TestHelpUnknownCommand: 'shmreg help nope' is refused like 'shmreg
// nope'; 'shmreg help put' shows put's flags.
func TestHelpUnknownCommand(t *testing.T) {
	r := runCLI(t, "help", "nope")
	r.wantExit(t, 2)
	if !strings.HasPrefix(r.stderr, `shmreg: unknown command "nope"`) {
		t.Errorf("help nope: stderr %q", r.stderr)
	}
	r = runCLI(t, "help", "put")
	r.wantExit(t, 0)
	if !strings.HasPrefix(r.stderr, "usage: shmreg put [flags] KEY VALUE") {
		t.Errorf("help put: stderr %q", r.stderr)
	}
	runCLI(t, "help", "put", "del").wantExit(t, 2)
}

// TestPutFromStdin: 'shmreg put KEY -' writes standard input as it is.
func TestPutFromStdin(t *testing.T) {
	c, conn := startCenter(t, "")
	value := []byte("line 1\nline 2\t\xff\n")
	cmd := exec.Command(shmregBinary(t), "put", "--centers", c.Addr().String(), "cfg/multi", "-")
	cmd.Stdin = bytes.NewReader(value)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("put -: %v\n%s", err, out)
	}
	rec, err := getT(t, conn, "cfg/multi")
	if err != nil || !bytes.Equal(rec.Value, value) {
		t.Fatalf("after put -: %q, %v; want %q", rec.Value, err, value)
	}
	cmd = exec.Command(shmregBinary(t), "put", "--centers", c.Addr().String(), "cfg/big", "-")
	cmd.Stdin = bytes.NewReader(make([]byte, 64<<10+1))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "exceeds 65536 bytes") {
		t.Errorf("put - of a value over the limit: %v\n%s", err, out)
	}
}

// TestStatSaysWriterGone: stat marks the writer pid it shows when that
// process no longer runs. The region is written by a child (this test
// binary, running TestHelperWriteRegion) that then exits.
func TestStatSaysWriterGone(t *testing.T) {
	region := filepath.Join(t.TempDir(), "region")
	child := exec.Command(os.Args[0], "-test.run=^TestHelperWriteRegion$")
	child.Env = append(os.Environ(), "SHMREG_TEST_WRITE_REGION="+region)
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	pid := child.ProcessState.Pid()
	r := runCLI(t, "stat", "--region", region)
	r.wantExit(t, 0)
	if want := regexp.MustCompile(`(?m)^writer pid\s+` + regexp.QuoteMeta(strconv.Itoa(pid)) + ` \(no longer running\)$`); !want.MatchString(r.stdout) {
		t.Errorf("stat of a region whose writer (%d) exited:\n%s", pid, r.stdout)
	}
	r = runCLI(t, "stat", "--region", region, "--json")
	var st struct {
		WriterPid     int  `json:"writer_pid"`
		WriterRunning bool `json:"writer_running"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.WriterPid != pid || st.WriterRunning {
		t.Errorf("stat --json: %+v %v\n%s", st, err, r.stdout)
	}

	// A live writer (this process) is shown as it is.
	w, live := testRegion(t)
	fillRegion(t, w)
	r = runCLI(t, "stat", "--region", live)
	if want := regexp.MustCompile(`(?m)^writer pid\s+` + strconv.Itoa(os.Getpid()) + `$`); !want.MatchString(r.stdout) {
		t.Errorf("stat of a live writer's region:\n%s", r.stdout)
	}
}

// TestHelperWriteRegion is the child of TestStatSaysWriterGone: it writes
// a region and exits. It does nothing in a normal run.
func TestHelperWriteRegion(t *testing.T) {
	path := os.Getenv("SHMREG_TEST_WRITE_REGION")
	if path == "" {
		return
	}
	w, err := shm.OpenWriter(path, shm.Options{Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("cfg/a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	w.Close()
}

func TestVersionLine(t *testing.T) {
	info := func(version string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/shmreg/shmreg", Version: version}}
		for i := 0; i < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{info("v1.4.0", "vcs.revision", "c4728e7aa", "vcs.time", "2026-11-28T06:20:13Z", "vcs.modified", "false"),
			"shmreg v1.4.0 (commit c4728e7aa, 2026-11-28T06:20:13Z; go1.26.8)"},
		{info("(devel)", "vcs.revision", "c4728e7aa", "vcs.time", "2026-11-28T06:20:13Z", "vcs.modified", "true"),
			"shmreg (devel) (commit c4728e7aa, modified, 2026-11-28T06:20:13Z; go1.26.8)"},
		{info("(devel)"), "shmreg (devel) (commit unknown; go1.26.8)"},
	} {
		if got := versionLine(tc.bi); got != tc.want {
			t.Errorf("versionLine = %q, want %q", got, tc.want)
		}
	}
}

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// fillRegion writes a small known data set in one commit, in an order that
// is not the key order, and sets the region's place.
func fillRegion(t *testing.T, w *shm.Writer) (instance registry.Instance) {
	t.Helper()
	instance = registry.Instance{Service: "web", ID: "web-1", Address: "10.0.0.1", Port: 8080,
		Metadata: map[string]string{"zone": "a"}}
	enc, err := registry.EncodeInstance(instance)
	if err != nil {
		t.Fatal(err)
	}
	var b shm.Batch
	b.Put([]byte("cfg/web/timeout"), []byte("300ms"))
	b.Put([]byte(registry.InstanceKey("web", "web-1")), enc)
	b.Put([]byte("cfg/db/url"), []byte("postgres://db"))
	b.Put([]byte("cfg/blob"), []byte{0xff, 0x00, 0xfe})
	b.Put([]byte("cfg/api/port"), []byte("9000"))
	b.SetPlace("center-A", 42)
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	return instance
}

func TestGetPrintsValues(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)

	r := runCLI(t, "get", "--region", region, "cfg/web/timeout")
	r.wantExit(t, 0)
	if r.stdout != "300ms\n" {
		t.Errorf("text value: got %q", r.stdout)
	}

	// Bytes that are not UTF-8 come out as base64, marked as such.
	r = runCLI(t, "get", "--region", region, "cfg/blob")
	r.wantExit(t, 0)
	if want := "base64:" + base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0xfe}) + "\n"; r.stdout != want {
		t.Errorf("binary value: got %q, want %q", r.stdout, want)
	}

	// An instance is decoded from msgpack and printed as JSON.
	r = runCLI(t, "get", "--region", region, "svc/web/web-1")
	r.wantExit(t, 0)
	var in instanceView
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil {
		t.Fatalf("instance is not JSON: %v\n%s", err, r.stdout)
	}
	if in.Service != "web" || in.ID != "web-1" || in.Address != "10.0.0.1" || in.Port != 8080 ||
		in.Weight != 1 || in.Health != registry.HealthPassing || in.Metadata["zone"] != "a" ||
		in.TTLMs != registry.DefaultTTL.Milliseconds() {
		t.Errorf("instance: got %+v", in)
	}
}

func TestGetErrors(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)

	r := runCLI(t, "get", "--region", region, "cfg/nope")
	r.wantExit(t, 1)
	if want := `shmreg get: no key "cfg/nope" in region ` + region + "\n"; r.stderr != want {
		t.Errorf("missing key: stderr %q, want %q", r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("missing key printed %q", r.stdout)
	}

	missing := filepath.Join(t.TempDir(), "absent")
	r = runCLI(t, "get", "--region", missing, "cfg/web/timeout")
	r.wantExit(t, 1)
	if want := "shmreg get: no region at " + missing + " (is an agent running? see 'shmreg agent --help')\n"; r.stderr != want {
		t.Errorf("missing region: stderr %q, want %q", r.stderr, want)
	}

	r = runCLI(t, "get", "--region", region)
	r.wantExit(t, 2)
	if !strings.Contains(r.stderr, "usage: shmreg get") || !strings.Contains(r.stderr, "shmreg get: need exactly one KEY") {
		t.Errorf("no KEY: stderr %q", r.stderr)
	}
}

func TestLsListsUnderPrefixInKeyOrder(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)

	r := runCLI(t, "ls", "--region", region, "cfg/")
	r.wantExit(t, 0)
	want := "cfg/api/port\t9000\n" +
		"cfg/blob\tbase64:/wD+\n" +
		"cfg/db/url\tpostgres://db\n" +
		"cfg/web/timeout\t300ms\n"
	if r.stdout != want {
		t.Errorf("ls cfg/:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = runCLI(t, "ls", "--region", region, "--keys")
	r.wantExit(t, 0)
	if want := "cfg/api/port\ncfg/blob\ncfg/db/url\ncfg/web/timeout\nsvc/web/web-1\n"; r.stdout != want {
		t.Errorf("ls --keys:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = runCLI(t, "ls", "--region", region, "svc/")
	r.wantExit(t, 0)
	if !strings.HasPrefix(r.stdout, "svc/web/web-1\t{") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("ls svc/: %q", r.stdout)
	}

	r = runCLI(t, "ls", "--region", region, "nothing/")
	r.wantExit(t, 0)
	if r.stdout != "" {
		t.Errorf("empty prefix printed %q", r.stdout)
	}

	// --format hex: byte-exact, what every language's reader prints.
	r = runCLI(t, "ls", "--region", region, "--format", "hex", "cfg/")
	r.wantExit(t, 0)
	hexWant := hex.EncodeToString([]byte("cfg/api/port")) + "\t" + hex.EncodeToString([]byte("9000")) + "\n" +
		hex.EncodeToString([]byte("cfg/blob")) + "\t" + "ff00fe" + "\n" +
		hex.EncodeToString([]byte("cfg/db/url")) + "\t" + hex.EncodeToString([]byte("postgres://db")) + "\n" +
		hex.EncodeToString([]byte("cfg/web/timeout")) + "\t" + hex.EncodeToString([]byte("300ms")) + "\n"
	if r.stdout != hexWant {
		t.Errorf("ls --format hex cfg/:\n%s\nwant:\n%s", r.stdout, hexWant)
	}
	runCLI(t, "ls", "--region", region, "--format", "yaml").wantExit(t, 2)

	r = runCLI(t, "ls", "--region", filepath.Join(t.TempDir(), "absent"))
	r.wantExit(t, 1)
	if !strings.Contains(r.stderr, "shmreg ls: no region at ") {
		t.Errorf("missing region: stderr %q", r.stderr)
	}
}

func TestStat(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)

	gen := w.Stat().Generation
	r := runCLI(t, "stat", "--region", region)
	r.wantExit(t, 0)
	for _, want := range []string{
		"path            " + region + "\n",
		"entries         5\n",
		fmt.Sprintf("generation      %d\n", gen),
		`place           center "center-A" revision 42` + "\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stat lacks %q:\n%s", want, r.stdout)
		}
	}

	r = runCLI(t, "stat", "--region", region, "--json")
	r.wantExit(t, 0)
	var st shm.Stat
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("stat --json: %v\n%s", err, r.stdout)
	}
	if st.Path != region || st.Entries != 5 || st.Generation != gen || st.PlaceCenter != "center-A" ||
		st.PlaceRevision != 42 || st.LayoutVersion != shm.LayoutVersion || st.WriterPid != uint64(os.Getpid()) {
		t.Errorf("stat --json: %+v", st)
	}
}

func TestFsckCleanRegion(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)

	r := runCLI(t, "fsck", "--region", region)
	r.wantExit(t, 0)
	if want := fmt.Sprintf("%s: generation %d, 5 entries", region, w.Stat().Generation) + ", 5 nodes, "; !strings.HasPrefix(r.stdout, want) || !strings.HasSuffix(r.stdout, "\nok\n") {
		t.Errorf("fsck: %q, want %q... ok", r.stdout, want)
	}

	r = runCLI(t, "fsck", "--region", region, "--json")
	r.wantExit(t, 0)
	var rep shm.FsckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 5 || rep.Problems == nil || len(rep.Problems) != 0 || !strings.Contains(r.stdout, `"problems": []`) {
		t.Errorf("fsck --json: %+v\n%s", rep, r.stdout)
	}

	missing := filepath.Join(t.TempDir(), "absent")
	r = runCLI(t, "fsck", "--region", missing)
	r.wantExit(t, 1)
	if want := "shmreg fsck: no region at " + missing; !strings.HasPrefix(r.stderr, want) {
		t.Errorf("missing region: stderr %q", r.stderr)
	}
}

// TestFsckFindsCorruption changes one byte of a key inside the data file:
// the list is then out of order and the index's tag no longer matches the
// key's hash, and fsck must say so and exit 1.
func TestFsckFindsCorruption(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)
	w.Close()

	data, err := os.ReadFile(region)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("cfg/blob"))
	if at < 0 || bytes.Count(data, []byte("cfg/blob")) != 1 {
		t.Fatalf("key cfg/blob found %d times in the data file", bytes.Count(data, []byte("cfg/blob")))
	}
	f, err := os.OpenFile(region, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// "cfg/blob" becomes "cfg/zlob": after cfg/db/url in the list, yet
	// linked before it.
	if _, err := f.WriteAt([]byte("z"), int64(at+len("cfg/"))); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r := runCLI(t, "fsck", "--region", region)
	r.wantExit(t, 1)
	if !strings.Contains(r.stdout, `problem: level 0: key "cfg/db/url" after "cfg/zlob" is out of order`) {
		t.Errorf("fsck does not report the order:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "\nok\n") {
		t.Errorf("fsck says ok on a corrupted region:\n%s", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "shmreg fsck: ") || !strings.HasSuffix(r.stderr, " problems found\n") {
		t.Errorf("stderr %q", r.stderr)
	}

	r = runCLI(t, "fsck", "--region", region, "--json")
	r.wantExit(t, 1)
	var rep shm.FsckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 {
		t.Errorf("fsck --json reports no problem: %s", r.stdout)
	}
}

// TestWatchPrintsLaterCommits runs 'shmreg watch' as its own process and
// commits from this one: each commit under the prefix must wake it (through
// the region's futex) and print one line; commits elsewhere print nothing.
func TestWatchPrintsLaterCommits(t *testing.T) {
	w, region := testRegion(t)
	if err := w.Put([]byte("cfg/a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	watch := startCLI(t, "watch", "--region", region, "--for", "60s", "cfg/")
	out := watch.out

	// The listing comes after watch noted the region's sequence, so every
	// commit made after this line is one it waits for.
	out.expect(t, `^= cfg/a\t1$`)
	const stamp = `^\d\d:\d\d:\d\d\.\d{3} `

	put := func(k, v string) {
		t.Helper()
		if err := w.Put([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	put("cfg/b", "2")
	out.expect(t, stamp+`\+ cfg/b\t2$`)
	put("cfg/a", "3")
	out.expect(t, stamp+`~ cfg/a\t3$`)
	if _, err := w.Delete([]byte("cfg/b")); err != nil {
		t.Fatal(err)
	}
	out.expect(t, stamp+`- cfg/b$`)
	put("svc/other/x", "outside the prefix")
	put("cfg/c", "4")
	out.expect(t, stamp+`\+ cfg/c\t4$`) // and not the key outside cfg/

	// Interrupted, watch stops cleanly.
	watch.stop(t, syscall.SIGINT)
}

// TestIncompleteRegionNamesTheMissingFile: a region with one of its two
// files gone is not "no region": the message names the file that is
// missing (each region command opens it the same way).
func TestIncompleteRegionNamesTheMissingFile(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)
	w.Close()
	if err := os.Remove(region + ".ctl"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"get", "--region", region, "cfg/db/url"}, {"ls", "--region", region}, {"stat", "--region", region}} {
		r := runCLI(t, args...)
		r.wantExit(t, 1)
		want := "shmreg " + args[0] + ": shm: region " + region + " is incomplete: its control file " + region + ".ctl is missing (the data file is there)\n"
		if r.stderr != want {
			t.Errorf("%q: stderr %q\nwant %q", args, r.stderr, want)
		}
	}
	_, region = testRegion(t)
	if err := os.Remove(region); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "get", "--region", region, "cfg/db/url")
	r.wantExit(t, 1)
	if want := "shmreg get: shm: region " + region + " is incomplete: its data file " + region + " is missing (the control file is there)\n"; r.stderr != want {
		t.Errorf("data file removed: stderr %q\nwant %q", r.stderr, want)
	}
}

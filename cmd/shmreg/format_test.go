package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/shm"
)

// entryLine is one line of --format json, as a script reads it.
type entryLine struct {
	Op       string          `json:"op"`
	Time     string          `json:"time"`
	Key      string          `json:"key"`
	Value    *string         `json:"value"`
	Encoding string          `json:"encoding"`
	Instance json.RawMessage `json:"instance"`
}

// bytes is the value a line stands for: the text, or the decoded base64.
func (e entryLine) bytes(t *testing.T) []byte {
	t.Helper()
	if e.Value == nil {
		t.Fatalf("line for %s has no value", e.Key)
	}
	switch e.Encoding {
	case "":
		return []byte(*e.Value)
	case "base64":
		b, err := base64.StdEncoding.DecodeString(*e.Value)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Fatalf("unknown encoding %q", e.Encoding)
	return nil
}

func parseLines(t *testing.T, out string) []entryLine {
	t.Helper()
	var lines []entryLine
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var e entryLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", l, err)
		}
		lines = append(lines, e)
	}
	return lines
}

// ambiguousRegion holds the values a text listing cannot tell apart or
// split: a text value that reads like the base64 rendering of a binary
// one, that binary value, a value with a tab and a newline, and an empty
// one.
func ambiguousRegion(t *testing.T) (*shm.Writer, string, map[string][]byte) {
	w, region := testRegion(t)
	vals := map[string][]byte{
		"cfg/binary":  {0xff, 0xfe},
		"cfg/text":    []byte("base64://4="),
		"cfg/lines":   []byte("a\tb\nc"),
		"cfg/empty":   {},
		"cfg/unicode": []byte("é €"),
	}
	var b shm.Batch
	for k, v := range vals {
		b.Put([]byte(k), v)
	}
	if err := w.Commit(&b); err != nil {
		t.Fatal(err)
	}
	return w, region, vals
}

// TestFormatJSONIsUnambiguous: get and ls --format json give one JSON
// object a line from which the exact bytes of every value come back.
func TestFormatJSONIsUnambiguous(t *testing.T) {
	_, region, vals := ambiguousRegion(t)
	r := runCLI(t, "ls", "--region", region, "--format", "json", "cfg/")
	r.wantExit(t, 0)
	lines := parseLines(t, r.stdout)
	if len(lines) != len(vals) {
		t.Fatalf("ls printed %d lines for %d entries:\n%s", len(lines), len(vals), r.stdout)
	}
	for _, e := range lines {
		if got := e.bytes(t); string(got) != string(vals[e.Key]) {
			t.Errorf("ls: %s reads back as %q, want %q", e.Key, got, vals[e.Key])
		}
	}
	if r.stdout != strings.Join([]string{
		`{"key":"cfg/binary","value":"//4=","encoding":"base64"}`,
		`{"key":"cfg/empty","value":""}`,
		`{"key":"cfg/lines","value":"a\tb\nc"}`,
		`{"key":"cfg/text","value":"base64://4="}`,
		`{"key":"cfg/unicode","value":"é €"}`,
	}, "\n")+"\n" {
		t.Errorf("ls --format json:\n%s", r.stdout)
	}
	for k, v := range vals {
		r := runCLI(t, "get", "--region", region, "--format", "json", k)
		r.wantExit(t, 0)
		if l := parseLines(t, r.stdout); len(l) != 1 || l[0].Key != k || string(l[0].bytes(t)) != string(v) {
			t.Errorf("get --format json %s: %q", k, r.stdout)
		}
	}
	// An instance carries its decoded form beside the (binary) value.
	w, region := testRegion(t)
	fillRegion(t, w)
	r = runCLI(t, "get", "--region", region, "--format", "json", "svc/web/web-1")
	r.wantExit(t, 0)
	if l := parseLines(t, r.stdout); l[0].Encoding != "base64" || !strings.Contains(string(l[0].Instance), `"address":"10.0.0.1"`) {
		t.Errorf("get --format json of an instance: %s", r.stdout)
	}
}

// TestGetRaw: get --raw writes the value's bytes and nothing else.
func TestGetRaw(t *testing.T) {
	_, region, vals := ambiguousRegion(t)
	for k, v := range vals {
		r := runCLI(t, "get", "--region", region, "--raw", k)
		r.wantExit(t, 0)
		if r.stdout != string(v) {
			t.Errorf("get --raw %s: %q, want %q", k, r.stdout, v)
		}
	}
	for _, args := range [][]string{
		{"get", "--region", region, "--raw", "--format", "json", "cfg/text"},
		{"get", "--region", region, "--format", "yaml", "cfg/text"},
		{"ls", "--region", region, "--format", "xml"},
		{"watch", "--region", region, "--format", "csv", "cfg/"},
	} {
		runCLI(t, args...).wantExit(t, 2)
	}
}

// TestWatchFormatJSON: watch --format json prints each entry and each
// change as a JSON object with its op and time.
func TestWatchFormatJSON(t *testing.T) {
	w, region := testRegion(t)
	if err := w.Put([]byte("cfg/a"), []byte{0xff, 0xfe}); err != nil {
		t.Fatal(err)
	}
	watch := startCLI(t, "watch", "--region", region, "--format", "json", "--for", "60s", "cfg/")
	line := func(op, key, value, encoding string) {
		t.Helper()
		l := parseLines(t, watch.out.next(t))[0]
		if l.Op != op || l.Key != key || (l.Value == nil) != (value == "-") || l.Value != nil && *l.Value != value || l.Encoding != encoding {
			t.Fatalf("line %+v, want op %s key %s value %q encoding %q", l, op, key, value, encoding)
		}
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil {
			t.Fatalf("line time %q: %v", l.Time, err)
		}
	}
	line("present", "cfg/a", "//4=", "base64")
	if err := w.Put([]byte("cfg/b"), []byte("x\ty")); err != nil {
		t.Fatal(err)
	}
	line("add", "cfg/b", "x\ty", "")
	if err := w.Put([]byte("cfg/a"), []byte("base64://4=")); err != nil {
		t.Fatal(err)
	}
	line("change", "cfg/a", "base64://4=", "")
	if _, err := w.Delete([]byte("cfg/b")); err != nil {
		t.Fatal(err)
	}
	line("delete", "cfg/b", "-", "")
	watch.stop(t, syscall.SIGINT)
}

// TestPutRefusesControlCharacters: a key with a tab, a newline or an
// escape is refused (by the SDK before sending, and by the center), so
// that no key can break a line of output.
func TestPutRefusesControlCharacters(t *testing.T) {
	c, conn := startCenter(t, "")
	for _, key := range []string{"cfg/a\tb", "cfg/a\nb", "cfg/\x1b[31mred"} {
		r := runCLI(t, "put", "--centers", c.Addr().String(), key, "v")
		r.wantExit(t, 1)
		if !strings.Contains(r.stderr, "registry: invalid: key") || !strings.Contains(r.stderr, "control character") {
			t.Errorf("put %q: stderr %q", key, r.stderr)
		}
		if _, err := getT(t, conn, key); err == nil {
			t.Errorf("put %q reached the center", key)
		}
	}
}

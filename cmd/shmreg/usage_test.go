package main

import (
	"errors"
	"strings"
	"testing"
)

// TestDispatch checks the exit statuses and the command list: every
// command with a summary is listed, the internal ones are not but still
// run.
func TestDispatch(t *testing.T) {
	var ran []string
	cmds := map[string]command{
		"good":     {"does well", func(args []string) error { ran = append(ran, "good "+strings.Join(args, " ")); return nil }},
		"bad":      {"fails", func([]string) error { return errors.New("it broke") }},
		"internal": {"", func([]string) error { ran = append(ran, "internal"); return nil }},
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string // what stderr must hold
	}{
		{nil, 2, "usage: shmreg <command> [flags]"},
		{[]string{"--help"}, 0, "  good       does well\n"},
		{[]string{"-h"}, 0, "  bad        fails\n"},
		{[]string{"help"}, 0, "Run 'shmreg <command> --help' for a command's flags."},
		{[]string{"nope"}, 2, "shmreg: unknown command \"nope\"\n\nusage: shmreg"},
		{[]string{"bad"}, 1, "shmreg bad: it broke\n"},
		{[]string{"good", "x", "y"}, 0, ""},
		{[]string{"internal"}, 0, ""},
	} {
		var stderr strings.Builder
		if code := run(cmds, tc.args, &stderr); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
		if !strings.Contains(stderr.String(), tc.out) {
			t.Errorf("%q: stderr lacks %q:\n%s", tc.args, tc.out, stderr.String())
		}
		if strings.Contains(stderr.String(), "internal") {
			t.Errorf("%q: the internal command is listed:\n%s", tc.args, stderr.String())
		}
	}
	if want := []string{"good x y", "internal"}; strings.Join(ran, "|") != strings.Join(want, "|") {
		t.Errorf("ran %q, want %q", ran, want)
	}
}

// TestHelpListsTheCommands runs the binary: the list holds every public
// command of commands() and not demo-reader.
func TestHelpListsTheCommands(t *testing.T) {
	r := runCLI(t, "--help")
	r.wantExit(t, 0)
	cmds := commands()
	for _, name := range sortedNames(cmds) {
		listed := strings.Contains(r.stderr, "\n  "+name+" ")
		if hidden := cmds[name].summary == ""; listed == hidden {
			t.Errorf("%s: listed %v, summary %q", name, listed, cmds[name].summary)
		}
	}
	if strings.Contains(r.stderr, "demo-reader") {
		t.Errorf("demo-reader is listed:\n%s", r.stderr)
	}
	// Without arguments: the same list, exit status 2.
	if r := runCLI(t); r.code != 2 || !strings.Contains(r.stderr, "\n  get ") {
		t.Errorf("no arguments: exit %d\n%s", r.code, r.stderr)
	}
}

// TestEveryCommandHelp: '<command> --help' prints the command's usage line
// and its flags and exits 0, for every command (the internal ones too).
// A command added to commands() without a row here fails the test.
func TestEveryCommandHelp(t *testing.T) {
	// A flag each command's help must show (one proves the flags are printed;
	// the rest are in the same PrintDefaults call).
	flagOf := map[string]string{
		"agent":       "-config string",
		"center":      "-tls-cert string",
		"cluster":     "-etcd string",
		"del":         "-centers string",
		"demo":        "-duration duration",
		"demo-reader": "-service string",
		"fsck":        "-json",
		"get":         "-region string",
		"ls":          "-keys",
		"put":         "-token string",
		"register":    "-meta value",
		"stat":        "-json",
		"watch":       "-for duration",
		"version":     "flags:\n", // it has none: an empty list
		// bench's flags belong to its workloads; it lists them instead.
		"bench": "workloads:",
	}
	cmds := commands()
	for _, name := range sortedNames(cmds) {
		want, ok := flagOf[name]
		if !ok {
			t.Errorf("%s: no row in this test", name)
			continue
		}
		for _, help := range []string{"--help", "-h"} {
			r := runCLI(t, name, help)
			if r.code != 0 {
				t.Errorf("%s %s: exit %d\n%s", name, help, r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "usage: shmreg "+name+" ") || !strings.Contains(r.stderr, want) {
				t.Errorf("%s %s: help lacks the usage line or %q:\n%s", name, help, want, r.stderr)
			}
			if name != "bench" && !strings.Contains(r.stderr, "\nflags:\n") {
				t.Errorf("%s %s: no flags section:\n%s", name, help, r.stderr)
			}
		}
	}
	// Each bench workload prints its flags.
	for _, workload := range []string{"read", "compare", "write", "propagate"} {
		r := runCLI(t, "bench", workload, "--help")
		if r.code != 0 || !strings.HasPrefix(r.stderr, "usage: shmreg bench "+workload+" ") || !strings.Contains(r.stderr, "-entries int") {
			t.Errorf("bench %s --help: exit %d\n%s", workload, r.code, r.stderr)
		}
	}
}

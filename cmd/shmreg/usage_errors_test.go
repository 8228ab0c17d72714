package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestUsageErrorsExit2: a command line shmreg cannot run as given — a
// stray argument, a missing or extra one, an unknown flag, a flag value
// out of range, flags that need each other — exits 2 with the reason as
// the last line, before the command does anything. Each row would
// otherwise run (often with a setting silently dropped) or fail with 1.
func TestUsageErrorsExit2(t *testing.T) {
	w, region := testRegion(t)
	fillRegion(t, w)
	data := t.TempDir()
	center := func(args ...string) []string {
		return append([]string{"center", "--listen", "127.0.0.1:0", "--data", data}, args...)
	}
	put := []string{"put", "--centers", "127.0.0.1:1", "--timeout", "1s"}
	for _, tc := range []struct {
		args []string
		want string // the end of stderr
	}{
		// Stray arguments (the flag package stops at the first word that is
		// not a flag: the flags after it were silently ignored).
		{[]string{"stat", "--json", "extra", "--region", region}, `unexpected arguments ["extra" "--region" "` + region + `"] (flags go before the arguments)`},
		{[]string{"fsck", "--region", region, "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"ls", "--region", region, "cfg/", "svc/"}, "at most one PREFIX"},
		{[]string{"get", "--region", region}, "need exactly one KEY"},
		{[]string{"get", "--region", region, "cfg/db/url", "extra"}, "need exactly one KEY"},
		{[]string{"watch", "--region", region, "--for", "1ms"}, `need exactly one PREFIX ("" for everything)`},
		{append(put, "cfg/k"), "need KEY VALUE"},
		{append(put, "cfg/k", "v", "--token", "x"), "need KEY VALUE (flags go before the arguments)"},
		{[]string{"del", "--centers", "127.0.0.1:1"}, "need KEY"},
		{[]string{"register", "--centers", "127.0.0.1:1", "--service", "web", "extra"}, `unexpected arguments ["extra"]`},
		{center("extra"), `unexpected arguments ["extra"]`},
		{[]string{"agent", "--centers", "127.0.0.1:1", "--subscribe", "svc/", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"demo", "--duration", "1ms", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"demo-reader", "--region", region, "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"bench", "read", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"bench"}, "missing workload"},
		{[]string{"bench", "nope"}, `unknown workload "nope"`},
		{[]string{"bench", "plot", "--json", "x.json"}, "bench plot needs --json and --plot"},
		{[]string{"bench", "read", "--plot", "chart.gif"}, "--plot chart.gif: the file name must end in .png or .svg"},
		// Unknown flags and unparsable values.
		{[]string{"stat", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"bench", "read", "--nope"}, "flag provided but not defined: -nope"},
		{center("--max-frame", "lots"), `invalid value "lots" for flag -max-frame: parse error`},
		// Required settings.
		{[]string{"center", "--listen", "127.0.0.1:0"}, "--data is required"},
		{[]string{"register", "--centers", "127.0.0.1:1"}, "--service is required"},
		// Values out of range.
		{center("--peer", "nonsense"), "--peer nonsense: missing port in address"},
		{center("--peer", "10.0.0.2:"), "--peer 10.0.0.2:: missing port in address"},
		{center("--peer", "10.0.0.2:99999"), "--peer 10.0.0.2:99999: port 99999 is not in 1..65535"},
		{center("--peer", "10.0.0.2:0"), "--peer 10.0.0.2:0: port 0 is not in 1..65535"},
		{[]string{"center", "--data", data, "--listen", "nonsense"}, "--listen nonsense: missing port in address"},
		{center("--metrics", "9100"), "--metrics 9100: missing port in address"},
		{center("--self-preservation", "7"), "--self-preservation 7: want a share in (0,1), or a negative value to turn it off"},
		{center("--self-preservation", "1"), "--self-preservation 1: want a share in (0,1), or a negative value to turn it off"},
		{center("--self-preservation", "0"), "--self-preservation 0: want a share in (0,1), or a negative value to turn it off"},
		{center("--self-preservation", "NaN"), "--self-preservation NaN: want a share in (0,1), or a negative value to turn it off"},
		{center("--max-frame", "10"), "--max-frame 10: the smallest is 131072 (128 KiB)"},
		{center("--tombstone-retention", "0s"), "--tombstone-retention 0s: must be positive"},
		{center("--log-level", "loud"), "--log-level loud: want debug, info, warn or error"},
		{center("--tls-key", "k.pem"), "--tls-key needs --tls-cert"},
		{center("--tls-cert", "c.pem"), "--tls-cert needs --tls-key"},
		{center("--tls-client-ca", "ca.pem"), "--tls-client-ca needs --tls-cert"},
		{center("--peer-tls-cert", "c.pem", "--peer-tls-key", "k.pem"), "--peer-tls-cert needs --peer-tls-ca"},
		{append([]string{"put", "--timeout", "0s"}, "cfg/k", "v"), "--timeout 0s: must be positive"},
		{append([]string{"put", "--centers", ""}, "cfg/k", "v"), "--centers: no address"},
		{append([]string{"put", "--centers", "a:1,nonsense"}, "cfg/k", "v"), "--centers nonsense: missing port in address"},
		{[]string{"watch", "--region", region, "--for", "-1s", "cfg/"}, "--for -1s: must not be negative"},
		{[]string{"agent", "--centers", "127.0.0.1:1", "--subscribe", "svc/", "--log-level", "loud"}, "--log-level loud: want debug, info, warn or error"},
		{[]string{"agent", "--centers", "127.0.0.1:1", "--subscribe", "svc/", "--control-uids", "root"}, `--control-uids: "root" is not a uid`},
	} {
		r := runCLI(t, tc.args...)
		if r.code != 2 || !strings.HasSuffix(r.stderr, tc.want+"\n") {
			t.Errorf("%q: exit %d, stderr ends %q\nwant exit 2 and a last line ending %q", tc.args, r.code, lastLine(r.stderr), tc.want)
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestUnknownFlagSaidOnce: the flag package's own complaint is not
// repeated by shmreg's: the usage, then the reason, once.
func TestUnknownFlagSaidOnce(t *testing.T) {
	for _, args := range [][]string{{"stat", "--nope"}, {"put", "--nope", "k", "v"}, {"bench", "write", "--nope"}} {
		r := runCLI(t, args...)
		if n := strings.Count(r.stderr, "flag provided but not defined"); n != 1 || !strings.Contains(r.stderr, "usage: shmreg ") {
			t.Errorf("%q: the error is said %d times (want 1, after the usage):\n%s", args, n, r.stderr)
		}
	}
}

// TestCenterSettingsAccepted: the values the checks must let through.
func TestCenterSettingsAccepted(t *testing.T) {
	ok := func(s centerSettings) centerSettings {
		if s.listen == "" {
			s.listen = "127.0.0.1:7701"
		}
		if s.maxFrame == 0 {
			s.maxFrame = 4 << 20
		}
		if s.selfPreservation == 0 {
			s.selfPreservation = 0.85
		}
		if s.tombstones == 0 {
			s.tombstones = 1
		}
		if s.logLevel == "" {
			s.logLevel = "info"
		}
		return s
	}
	for _, s := range []centerSettings{
		ok(centerSettings{}),
		ok(centerSettings{listen: "127.0.0.1:0", peer: "10.0.0.2:7701", metrics: ":9100"}),
		ok(centerSettings{listen: "[::1]:7701", peer: "center-b.internal:7701"}),
		ok(centerSettings{peer: "center-b:http"}), // a service name
		ok(centerSettings{selfPreservation: -1}),
		ok(centerSettings{selfPreservation: 0.01}),
		ok(centerSettings{maxFrame: 128 << 10}),
		ok(centerSettings{logLevel: "DEBUG"}),
		ok(centerSettings{tlsCert: "c", tlsKey: "k", clientCA: "ca"}),
		ok(centerSettings{peerCA: "ca", peerCert: "c", peerKey: "k"}),
	} {
		if err := s.check(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

// TestMessages: the small wording rules of issue 15: no "1 problems", no
// usage line ending in a space, no bench flag listed without its default.
func TestMessages(t *testing.T) {
	for n, want := range map[int]string{1: "1 problem found", 2: "2 problems found", 100: "100 problems found"} {
		if got := problemsFound(n); got != want {
			t.Errorf("problemsFound(%d) = %q, want %q", n, got, want)
		}
	}
	for _, name := range sortedNames(commands()) {
		r := runCLI(t, name, "--help")
		if first := strings.SplitN(r.stderr, "\n", 2)[0]; strings.HasSuffix(first, " ") {
			t.Errorf("%s --help: usage line %q ends in a space", name, first)
		}
	}
	for _, workload := range []string{"read", "compare", "write", "propagate"} {
		r := runCLI(t, "bench", workload, "--help")
		if m := regexp.MustCompile(`\n  -clients int\n\s+([^\n]*)`).FindStringSubmatch(r.stderr); m != nil && !strings.Contains(m[1], "default") {
			t.Errorf("bench %s --help: -clients has no default: %q", workload, m[1])
		}
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/agent"
)

// tokenFile writes a token file with the given content and mode.
func tokenFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := writeFile(t, "token", content)
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTokenResolve: where the token of center, put, del and register comes
// from. The command line wins over $SHMREG_TOKEN_FILE; the file's content
// is trimmed; an empty file, a missing one and both flags at once are
// errors (the last a usage error); a file others may read is accepted
// with a warning.
func TestTokenResolve(t *testing.T) {
	secret := tokenFile(t, "  s3cret\n", 0o600)
	other := tokenFile(t, "other\n", 0o600)
	empty := tokenFile(t, "", 0o600)
	blank := tokenFile(t, " \n\t\n", 0o600)
	shared := tokenFile(t, "shared", 0o640)
	public := tokenFile(t, "public", 0o644)
	missing := filepath.Join(t.TempDir(), "absent")
	for _, tc := range []struct {
		name    string
		args    []string
		env     string
		want    string
		warn    bool
		wantErr string // "" for none; "usage" for a usage error
	}{
		{"none", nil, "", "", false, ""},
		{"--token", []string{"--token", "abc"}, "", "abc", false, ""},
		{"--token-file, trimmed", []string{"--token-file", secret}, "", "s3cret", false, ""},
		{"env", nil, secret, "s3cret", false, ""},
		{"--token wins over env", []string{"--token", "abc"}, other, "abc", false, ""},
		{"--token-file wins over env", []string{"--token-file", secret}, other, "s3cret", false, ""},
		{"--token empty: none, env or not", []string{"--token", ""}, other, "", false, ""},
		{"--token-file empty: none, env or not", []string{"--token-file", ""}, other, "", false, ""},
		{"group-readable: warned", []string{"--token-file", shared}, "", "shared", true, ""},
		{"world-readable through env: warned", nil, public, "public", true, ""},
		{"both flags", []string{"--token", "abc", "--token-file", secret}, "", "", false, "usage"},
		{"empty file", []string{"--token-file", empty}, "", "", false, "holds no token"},
		{"blank file", nil, blank, "", false, "holds no token"},
		{"missing file", []string{"--token-file", missing}, "", "", false, "no such file"},
		{"missing file through env", nil, missing, "", false, "no such file"},
	} {
		fs := newFlags("t", "", "")
		tf := addTokenFlags(fs, "token")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		got, warning, err := tf.resolve(tc.env)
		switch {
		case tc.wantErr == "usage":
			if !isUsage(err) {
				t.Errorf("%s: err %v, want a usage error", tc.name, err)
			}
		case tc.wantErr != "":
			if err == nil || isUsage(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.wantErr)
			}
		case err != nil || got != tc.want || (warning != "") != tc.warn:
			t.Errorf("%s: token %q, warning %q, err %v; want %q, warning %v", tc.name, got, warning, err, tc.want, tc.warn)
		}
	}
}

func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// TestAgentToken: the agent's token comes from the command line, else its
// settings file, else $SHMREG_TOKEN_FILE; a token named on the command
// line replaces the file's, whichever way the file names it.
func TestAgentToken(t *testing.T) {
	secret := tokenFile(t, "s3cret\n", 0o600)
	other := tokenFile(t, "other\n", 0o600)
	empty := tokenFile(t, "\n", 0o600)
	inline := writeFile(t, "inline.yaml", "token: inline\n")
	named := writeFile(t, "named.yaml", "token_file: "+other+"\n")
	for _, tc := range []struct {
		name    string
		args    []string
		env     string
		want    string
		wantErr string
	}{
		{"env", nil, secret, "s3cret", ""},
		{"--token-file wins over env", []string{"--token-file", other}, secret, "other", ""},
		{"file's token wins over env", []string{"--config", inline}, secret, "inline", ""},
		{"file's token_file wins over env", []string{"--config", named}, secret, "other", ""},
		{"--token-file replaces the file's token", []string{"--config", inline, "--token-file", secret}, "", "s3cret", ""},
		{"--token replaces the file's token_file", []string{"--config", named, "--token", "abc"}, "", "abc", ""},
		{"--token empty: none", []string{"--token", ""}, secret, "", ""},
		{"empty file through env", nil, empty, "", "holds no token"},
		{"both flags", []string{"--token", "abc", "--token-file", secret}, "", "", "mutually exclusive"},
	} {
		t.Setenv(tokenFileEnv, tc.env)
		cfg, _, _, err := agentSettings(tc.args)
		var got string
		if err == nil {
			cfg, _, err = agentToken(cfg)
			got = cfg.Token
		}
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: token %q, err %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestCenterAndClientsReadTheTokenFile runs 'shmreg center' with its token
// in a file, named by --token-file or by $SHMREG_TOKEN_FILE: a put without
// the token is refused, one whose --token-file (or environment) names the
// same file is accepted. A token file others may read is warned about in
// the center's log.
func TestCenterAndClientsReadTheTokenFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode os.FileMode
		flag bool // --token-file, else $SHMREG_TOKEN_FILE
	}{
		{"flag", 0o600, true},
		{"env, world-readable", 0o644, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tokenFile(t, "s3cret\n", tc.mode)
			addr := freeAddr(t)
			args := []string{"center", "--listen", addr, "--data", t.TempDir(), "--log-level", "warn"}
			var env []string
			if tc.flag {
				args = append(args, "--token-file", file)
			} else {
				env = []string{tokenFileEnv + "=" + file}
			}
			c := startCLIEnv(t, env, args...)
			waitListening(t, addr)

			r := runCLI(t, "put", "--centers", addr, "--timeout", "3s", "cfg/k", "v")
			r.wantExit(t, 1)
			if !strings.Contains(r.stderr, "unauthorized") {
				t.Errorf("put without the token: stderr %q", r.stderr)
			}
			runCLI(t, "put", "--centers", addr, "--token-file", file, "cfg/k", "by-flag").wantExit(t, 0)
			runCLIEnv(t, []string{tokenFileEnv + "=" + file}, "put", "--centers", addr, "cfg/k", "by-env").wantExit(t, 0)
			runCLIEnv(t, []string{tokenFileEnv + "=" + file}, "del", "--centers", addr, "cfg/k").wantExit(t, 0)

			c.stop(t, syscall.SIGTERM)
			warned := strings.Contains(c.stderr.String(), "is readable by group or others")
			if warned != (tc.mode&0o077 != 0) {
				t.Errorf("mode %04o: warned %v\n%s", tc.mode, warned, c.stderr.String())
			}
		})
	}
}

// waitListening waits until something accepts connections at addr (a
// center started as a process: there is nothing to wait on before it
// listens).
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens at %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentReadsTheTokenFile runs 'shmreg agent' with $SHMREG_TOKEN_FILE
// naming its token: an instance registered through its control socket
// reaches a center that requires the token.
func TestAgentReadsTheTokenFile(t *testing.T) {
	c, conn := startCenter(t, "s3cret")
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	file := tokenFile(t, "s3cret\n", 0o600)
	startCLIEnv(t, []string{tokenFileEnv + "=" + file}, "agent", "--centers", c.Addr().String(),
		"--region", filepath.Join(dir, "region"), "--region-size", "1048576", "--subscribe", "svc/",
		"--control", sock, "--log-level", "warn")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ctl net.Conn
	for {
		var err error
		if ctl, err = net.Dial("unix", sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no control socket: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	defer ctl.Close()
	ctl.SetDeadline(time.Now().Add(20 * time.Second))
	req := `{"op":"register","instance":{"service":"web","id":"w1","address":"10.0.0.1","port":80,"weight":1,"health":"passing"},"ttl_ms":30000}` + "\n"
	if _, err := ctl.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(ctl).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var resp agent.Response
	if err := json.Unmarshal(line, &resp); err != nil || !resp.OK {
		t.Fatalf("register through the agent: %s (%v)", line, err)
	}
	if _, err := getT(t, conn, "svc/web/w1"); err != nil {
		t.Fatalf("the instance is not on the center: %v", err)
	}
}

// TestTokenErrorsExit: both flags at once is a usage error (exit 2) for
// every command that takes a token; a token file that holds nothing or
// does not exist stops the command before it does anything (exit 1).
func TestTokenErrorsExit(t *testing.T) {
	file := tokenFile(t, "s3cret\n", 0o600)
	empty := tokenFile(t, "\n", 0o600)
	missing := filepath.Join(t.TempDir(), "absent")
	center := []string{"center", "--listen", "127.0.0.1:0", "--data", t.TempDir()}
	agentArgs := []string{"agent", "--centers", "127.0.0.1:1", "--subscribe", "svc/", "--region", filepath.Join(t.TempDir(), "r")}
	put := []string{"put", "--centers", "127.0.0.1:1", "--timeout", "1s"}
	both := []string{"--token", "x", "--token-file", file}
	for _, tc := range []struct {
		args []string
		env  string
		code int
		want string
	}{
		{append(center, both...), "", 2, "shmreg center: --token and --token-file are mutually exclusive"},
		{append(agentArgs, both...), "", 2, "shmreg agent: --token and --token-file are mutually exclusive"},
		{append(append(put, both...), "k", "v"), "", 2, "shmreg put: --token and --token-file are mutually exclusive"},
		{append(center, "--token-file", empty), "", 1, "holds no token"},
		{center, empty, 1, "holds no token"},
		{agentArgs, empty, 1, "holds no token"},
		{append(put, "--token-file", empty, "k", "v"), "", 1, "holds no token"},
		{append(center, "--token-file", missing), "", 1, "no such file"},
		{append(put, "k", "v"), missing, 1, "no such file"},
	} {
		var env []string
		if tc.env != "" {
			env = []string{tokenFileEnv + "=" + tc.env}
		}
		r := runCLIEnv(t, env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q (env %q): exit %d, stderr %q; want exit %d and %q", tc.args, tc.env, r.code, r.stderr, tc.code, tc.want)
		}
	}
}

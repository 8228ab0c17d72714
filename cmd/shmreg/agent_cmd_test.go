package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/shm"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const agentYAML = `centers: [10.0.0.1:7701, 10.0.0.2:7701]
region: /dev/shm/shmreg/from-file
subscribe: [svc/, cfg/web/]
token: file-token
control: /run/shmreg/agent.sock
control_mode: "0640"
control_uids: [1001, 1002]
metrics: 127.0.0.1:9178
tls_server_name: centers.internal
keepalive: 3s
`

const agentJSON = `{"centers": ["10.0.0.1:7701", "10.0.0.2:7701"], "region": "/dev/shm/shmreg/from-file",
 "subscribe": ["svc/", "cfg/web/"], "token": "file-token", "control": "/run/shmreg/agent.sock",
 "control_mode": "0640", "control_uids": [1001, 1002], "metrics": "127.0.0.1:9178",
 "tls_server_name": "centers.internal", "keepalive": "3s"}`

// fromFile is what both files above hold.
var fromFile = agent.Config{
	Centers: []string{"10.0.0.1:7701", "10.0.0.2:7701"}, Region: "/dev/shm/shmreg/from-file",
	Subscribe: []string{"svc/", "cfg/web/"}, Token: "file-token", Control: "/run/shmreg/agent.sock",
	ControlMode: "0640", ControlUIDs: []int{1001, 1002}, Metrics: "127.0.0.1:9178",
	TLSServerName: "centers.internal", KeepAlive: "3s",
}

// TestAgentSettings: the agent's settings come from the flags, from
// --config (YAML or JSON by the file's name), or both with the flags given
// on the command line winning, including a flag set to empty.
func TestAgentSettings(t *testing.T) {
	yamlFile := writeFile(t, "agent.yaml", agentYAML)
	jsonFile := writeFile(t, "agent.json", agentJSON)
	noRegion := writeFile(t, "bare.yml", "centers: [10.0.0.9:7701]\n")
	override := func(c agent.Config, f func(*agent.Config)) agent.Config {
		c.Centers = append([]string(nil), c.Centers...)
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		args []string
		want agent.Config
	}{
		{"flags only", []string{"--centers", "a:1, b:2", "--subscribe", "svc/", "--control-uids", "7,8"},
			agent.Config{Centers: []string{"a:1", "b:2"}, Region: defaultRegion, Subscribe: []string{"svc/"}, ControlUIDs: []int{7, 8}}},
		{"yaml", []string{"--config", yamlFile}, fromFile},
		{"json", []string{"--config", jsonFile}, fromFile},
		{"flags win", []string{"--config", yamlFile, "--region", "mine", "--centers", "c:3", "--token", "", "--region-size", "4096"},
			override(fromFile, func(c *agent.Config) { c.Region, c.Centers, c.Token, c.RegionSize = "mine", []string{"c:3"}, "", 4096 })},
		{"flag after file order does not matter", []string{"--control-uids", "5", "--config", jsonFile},
			override(fromFile, func(c *agent.Config) { c.ControlUIDs = []int{5} })},
		{"file without a region", []string{"--config", noRegion},
			agent.Config{Centers: []string{"10.0.0.9:7701"}, Region: defaultRegion}},
	} {
		cfg, level, help, err := agentSettings(tc.args)
		if err != nil || help || level != "info" {
			t.Errorf("%s: help %v, level %q, err %v", tc.name, help, level, err)
			continue
		}
		if !reflect.DeepEqual(cfg, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, cfg, tc.want)
		}
	}
}

func TestAgentSettingsErrors(t *testing.T) {
	misspelt := writeFile(t, "agent.yaml", "centres: [10.0.0.1:7701]\n")
	misspeltJSON := writeFile(t, "agent.json", `{"centres": ["10.0.0.1:7701"]}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", misspelt}, "centres"},
		{[]string{"--config", misspeltJSON}, "centres"},
		{[]string{"--config", filepath.Join(t.TempDir(), "absent.yaml")}, "no such file"},
		{[]string{"--control-uids", "root"}, `--control-uids: "root" is not a uid`},
	} {
		_, _, _, err := agentSettings(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to say %q", tc.args, err, tc.want)
		}
		if strings.HasPrefix(tc.args[0], "--config") && !errors.Is(err, agent.ErrConfig) {
			t.Errorf("%q: err %v is not agent.ErrConfig", tc.args, err)
		}
	}
}

// TestAgentFromConfigFile runs 'shmreg agent --config' against a center on
// loopback: what is put on the center under the subscribed prefix lands
// in the region named by the file, readable by 'shmreg get'; SIGTERM stops
// the agent with exit status 0.
func TestAgentFromConfigFile(t *testing.T) {
	c, conn := startCenter(t, "")
	region := filepath.Join(t.TempDir(), "region")
	cfg := writeFile(t, "agent.yaml", "centers: ["+c.Addr().String()+"]\nregion: "+region+
		"\nsubscribe: [cfg/]\nregion_size: 1048576\n")
	ag := startCLI(t, "agent", "--config", cfg, "--log-level", "warn")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := conn.Put(ctx, "cfg/web/timeout", []byte("250ms")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Put(ctx, "other/key", []byte("not subscribed")); err != nil {
		t.Fatal(err)
	}
	r := openWhenCreated(ctx, t, region)
	defer r.Close()
	for seq := r.Seq(); ; {
		if _, err := r.Get([]byte("cfg/web/timeout")); err == nil {
			break
		}
		var err error
		if seq, err = r.Wait(ctx, seq); err != nil {
			t.Fatalf("the entry never reached the region: %v", err)
		}
	}
	if _, err := r.Get([]byte("other/key")); !errors.Is(err, shm.ErrNotFound) {
		t.Errorf("an entry outside the subscription reached the region: %v", err)
	}

	ag.stop(t, syscall.SIGTERM)
	// The region outlives its writer.
	res := runCLI(t, "get", "--region", region, "cfg/web/timeout")
	res.wantExit(t, 0)
	if res.stdout != "250ms\n" {
		t.Errorf("get: %q", res.stdout)
	}
}

// openWhenCreated opens the region as soon as the agent has created it
// (there is nothing to wait on before the file exists, so it polls). The
// control file is created in place, so for a moment it exists empty or
// unwritten: those errors mean "not yet" too.
func openWhenCreated(ctx context.Context, t *testing.T, path string) *shm.Reader {
	t.Helper()
	for {
		r, err := shm.Open(path, shm.Options{})
		if err == nil {
			return r
		}
		if !errors.Is(err, shm.ErrNoRegion) && !errors.Is(err, shm.ErrTruncated) && !errors.Is(err, shm.ErrBadMagic) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no region at %s: %v", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

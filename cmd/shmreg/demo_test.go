package main

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// TestDemo runs 'shmreg demo' as a user would and checks that it walks
// through its script and exits 0.
func TestDemo(t *testing.T) {
	bin := shmregBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "demo", "--duration", "45s", "--measure", "100ms").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		`\[1/6\] Starting a mirrored pair`,
		`svc/web/web-1 +acknowledged in .* in shared memory after`,
		`db +db-primary +10\.0\.2\.31:5432`,
		`the agent failed over to center [AB] in \S+`,
		`resync by diff: 7 entries in the snapshot, 7 unchanged \(not touched\), 0 written, 0 deleted`,
		`registered svc/web/web-4 through center [AB]: in shared memory after`,
		`reader process pid \d+ opened the region`,
		`web-4 +10\.0\.0\.14:8080`,
		`shared memory \(Session\.View\) +\d+`,
		`TCP to a center \(Conn\.Get\) +\d+`,
		`Done\.`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// TestDemoStopsAtDuration: a --duration shorter than the script stops it
// cleanly, with exit status 0.
func TestDemoStopsAtDuration(t *testing.T) {
	bin := shmregBinary(t)
	start := time.Now()
	out, err := exec.Command(bin, "demo", "--duration", "300ms", "--measure", "2s").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`stopped; cleaning up`).Match(out) {
		t.Fatalf("no clean stop:\n%s", out)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %v to stop", d)
	}
}

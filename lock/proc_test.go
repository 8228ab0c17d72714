package lock

import (
	"os"
	"os/exec"
	"testing"
)

func TestSelfMatchesProc(t *testing.T) {
	h, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if h.Pid != os.Getpid() || h.Start == 0 {
		t.Fatalf("Self() = %+v", h)
	}
	if !Alive(h) {
		t.Fatal("Alive(Self()) = false")
	}
	if Alive(Holder{Pid: h.Pid, Start: h.Start + 1}) {
		t.Fatal("a reused pid (other start time) is reported alive")
	}
	if Alive(Holder{Pid: 0}) || Alive(Holder{Pid: -1}) {
		t.Fatal("pid <= 0 reported alive")
	}
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses must not shift the fields.
	line := "1234 (a b) c)) S 1 1234 1234 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n"
	start, state, err := parseStat([]byte(line))
	if err != nil || start != 987654 || state != 'S' {
		t.Fatalf("parseStat = %d, %q, %v; want 987654, 'S', nil", start, state, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

// TestAliveChildLifecycle: a running child is alive, a zombie (exited, not
// yet reaped) is dead, a reaped one is dead.
func TestAliveChildLifecycle(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	pid := cmd.Process.Pid
	start, _, err := procStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	h := Holder{Pid: pid, Start: start}
	if !Alive(h) {
		t.Fatal("running child reported dead")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Not reaped yet: the child is (or soon becomes) a zombie.
	waitFor(t, func() bool { return !Alive(h) }, "killed, unreaped child still reported alive")
	_ = cmd.Wait()
	if Alive(h) {
		t.Fatal("reaped child reported alive")
	}
}

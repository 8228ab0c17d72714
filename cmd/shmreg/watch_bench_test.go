package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmreg/shmreg/agent"
	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// BenchmarkWatchLine measures how soon the real `shmreg watch`, in a process
// of its own, prints the line for a change committed to the region; one
// change at a time (the next is made once the line for the last was read).
//
//   - commit: this process commits each change itself (shm.Writer.Put, the
//     call the agent's commit makes), stamping the time just before, so
//     commit→line is exact: the futex wake-up, the watcher's scan and
//     print, the pipe.
//   - agent: a real agent in this process, following a center on loopback,
//     commits each change a producer puts at the center; put→line adds the
//     center, the push over TCP and the agent's apply to the above, and
//     bounds the agent's commit→line from above. The center's default
//     PushDelay (1ms, to gather a burst into one push) is most of it;
//     agent-nodelay runs with PushDelay 0 to show the rest.
func BenchmarkWatchLine(b *testing.B) {
	bin := shmregBinary(b)
	b.Run("commit", func(b *testing.B) {
		dir := b.TempDir()
		region := filepath.Join(dir, "region")
		w, err := shm.OpenWriter(region, shm.Options{Dir: dir, Size: 4 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		benchWatchLine(b, bin, region, "commit→line", func(v string) {
			if err := w.Put([]byte("bench/tick"), []byte(v)); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("agent", func(b *testing.B) { benchWatchLineAgent(b, bin, 0) })
	b.Run("agent-nodelay", func(b *testing.B) { benchWatchLineAgent(b, bin, -1) })
}

// benchWatchLineAgent times put→line through a center and a real agent.
// pushDelay is the center's PushDelay (0: its default, negative: none).
func benchWatchLineAgent(b *testing.B, bin string, pushDelay time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := b.TempDir()
	center, err := pair.New(pair.Options{Options: center.Options{Insecure: true, Listen: "127.0.0.1:0", PushDelay: pushDelay}})
	if err != nil {
		b.Fatal(err)
	}
	if err := center.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer center.Shutdown(context.Background())
	region := filepath.Join(dir, "region")
	a, err := agent.New(agent.Options{
		Centers: []string{center.Addr().String()}, Region: region,
		Shm: shm.Options{Dir: dir, Size: 4 << 20}, Prefixes: []string{"bench/"},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	admin, err := registry.Dial(ctx, center.Addr().String(), registry.DialOptions{Role: registry.RoleAdmin})
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	benchWatchLine(b, bin, region, "put→line", func(v string) {
		if _, err := admin.Put(ctx, "bench/tick", []byte(v)); err != nil {
			b.Fatal(err)
		}
	})
}

// benchWatchLine runs `shmreg watch` on region and, per iteration, times
// change(v) until the watcher printed the line for bench/tick = v.
func benchWatchLine(b *testing.B, bin, region, metric string, change func(v string)) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "watch", "--region", region, "bench/")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel() // kills the watcher before Wait
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	lineFor := func(v string) time.Time {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					b.Fatal("shmreg watch exited")
				}
				if strings.HasSuffix(l, "bench/tick\t"+v) {
					return time.Now()
				}
			case <-timeout:
				b.Fatalf("no line for bench/tick = %s", v)
			}
		}
	}
	// The watcher prints what the region holds when it starts, then the
	// changes: the first change's line, either way, says it is up.
	change("0")
	lineFor("0")

	lat := make([]time.Duration, 0, 1024)
	i := 0
	for b.Loop() {
		i++
		v := strconv.Itoa(i)
		start := time.Now()
		change(v)
		lat = append(lat, lineFor(v).Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.5), metric+"-p50-µs")
	b.ReportMetric(at(0.99), metric+"-p99-µs")
	b.ReportMetric(float64(lat[len(lat)*999/1000])/1e3, metric+"-p99.9-µs")
}

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// fanoutCenter is the center process the fanout workload measures, with
// what the harness reads of it: /proc/PID (memory, CPU) and its
// Prometheus metrics.
type fanoutCenter struct {
	*child
	addr    string
	metrics string // host:port of /metrics
	pid     int
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// startFanoutCenter starts `shmreg center` on loopback with its store in
// data, accepting conns connections from this host, and waits until it
// serves.
func startFanoutCenter(ctx context.Context, cmd func([]string) *exec.Cmd, data string, conns int, writeTimeout time.Duration) (*fanoutCenter, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	c := &fanoutCenter{addr: loopback(port), metrics: loopback(mport)}
	limit := strconv.Itoa(conns)
	args := []string{
		"--listen", c.addr, "--data", data, "--metrics", c.metrics,
		"--self-preservation", "-1", "--log-level", "warn", "--insecure",
		"--max-conns", limit, "--max-conns-per-addr", limit,
	}
	if writeTimeout > 0 {
		args = append(args, "--write-timeout", writeTimeout.String())
	}
	ch, err := startChild(cmd(args), "center")
	if err != nil {
		return nil, err
	}
	c.child, c.pid = ch, ch.cmd.Process.Pid
	deadline := time.Now().Add(2 * time.Minute) // loading 100K+ records takes a while
	for {
		conn, err := registry.Dial(ctx, c.addr, registry.DialOptions{Name: "bench-fanout"})
		if err == nil {
			conn.Close()
			break
		}
		select {
		case <-ch.exited():
			return nil, ch.err()
		default:
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 20*time.Millisecond) {
			c.stop()
			return nil, fmt.Errorf("center %s not serving after 2m: %w", c.addr, err)
		}
	}
	return c, nil
}

// memory is the center's resident set now and at its peak (VmRSS, VmHWM).
func (c *fanoutCenter) memory() (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if len(fs) != 2 || fs[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return rss, peak, sc.Err()
}

// cpu is the CPU time (user + system) the center has used.
func (c *fanoutCenter) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields restart after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: unexpected /proc/%d/stat", c.pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return 0, fmt.Errorf("bench: unexpected /proc/%d/stat", c.pid)
	}
	ut, err1 := strconv.ParseInt(fs[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(fs[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: unexpected /proc/%d/stat", c.pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// scrape reads the center's unlabelled metrics.
func (c *fanoutCenter) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: center metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("bench: center metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the samples without labels of a Prometheus text
// exposition.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// centerSample is the center's counters at one moment.
type centerSample struct {
	at      time.Time
	cpu     time.Duration
	metrics map[string]float64
	self    time.Duration // the harness's own CPU time
}

func (c *fanoutCenter) sample(ctx context.Context) (centerSample, error) {
	s := centerSample{at: time.Now(), self: cpuTime()}
	var err error
	if s.cpu, err = c.cpu(); err != nil {
		return s, err
	}
	s.metrics, err = c.scrape(ctx)
	return s, err
}

// raiseNoFile lifts this process's open-file limit (which the center
// inherits) to its hard limit and returns it.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}

// loadAverage is /proc/loadavg's first three figures ("2.51 4.04 3.23").
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "?"
	}
	return strings.Join(fs[:3], " ")
}

// died is the error of a center that exited by itself, if it did.
func (c *fanoutCenter) died() error {
	select {
	case <-c.exited():
		return c.err()
	default:
		return nil
	}
}

// memAvailable is the kernel's estimate of the memory available to new
// work (MemAvailable in /proc/meminfo); 8 GiB if it cannot be read.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
				if fs := strings.Fields(v); len(fs) == 2 {
					if n, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
						return n << 10
					}
				}
			}
		}
	}
	return 8 << 30
}

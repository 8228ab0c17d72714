package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shmreg/shmreg/registry"
)

// TestFanoutSmoke runs the fanout workload small (20 agents, 500 entries,
// 100 writes/s for 300ms) against a center process and checks that its
// rows are sane: every delivery arrived, latencies and the fill time are
// positive, the center's resources were read. No timing thresholds.
func TestFanoutSmoke(t *testing.T) {
	start := time.Now()
	cfg := FanoutConfig{
		Config:    Config{Entries: 500, Run: Run{Duration: 300 * time.Millisecond}, Dir: t.TempDir()},
		Agents:    []int{20},
		Rates:     []int{100},
		Services:  10,
		Settle:    50 * time.Millisecond,
		CenterCmd: testCenter,
	}
	rs, err := Fanout(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d rows, want 1", len(rs))
	}
	r, f := rs[0], rs[0].Fanout
	t.Logf("%s\n%s", r.Status, r.Note)
	if !r.OK() || f.Missing != 0 || f.FailedAgents != 0 || f.Resnapshots != 0 || f.Stray != 0 {
		t.Errorf("status %q: missing %d, failed agents %d, resnapshots %d, stray %d", r.Status, f.Missing, f.FailedAgents, f.Resnapshots, f.Stray)
	}
	if r.Clients != 20 || f.WideAgents != 10 || r.Entries != 500 || r.GoVersion == "" {
		t.Errorf("row %+v", r.Result)
	}
	if f.Writes != 30 || f.WritesPerSec <= 0 || f.AckP99Ns <= 0 {
		t.Errorf("writes %d at %.0f/s, ack p99 %d", f.Writes, f.WritesPerSec, f.AckP99Ns)
	}
	// Ten wide agents get every write; ten narrow ones two services of ten.
	if want := uint64(10*30 + 10*30*2/10); f.Deliveries != want || f.Delivered != want {
		t.Errorf("deliveries %d, delivered %d, want %d", f.Deliveries, f.Delivered, want)
	}
	if r.Samples != f.Delivered || r.P50 < 0 || r.P99 < r.P50 || r.Max < r.P99 || r.Max <= 0 {
		t.Errorf("latencies: %d samples, p50 %d p99 %d max %d", r.Samples, r.P50, r.P99, r.Max)
	}
	if f.FillNs <= 0 || f.FillP50Ns <= 0 || f.FillP50Ns > f.FillNs || f.FillRecords != 10*500+10*100 {
		t.Errorf("fill %d ns (median %d) of %d records", f.FillNs, f.FillP50Ns, f.FillRecords)
	}
	if f.RSSBase <= 0 || f.RSSIdle <= 0 || f.RSSPeak < f.RSSIdle || f.CenterCPU <= 0 || f.HarnessCPU <= 0 {
		t.Errorf("resources: rss base %d idle %d peak %d, center cpu %.3f harness %.3f", f.RSSBase, f.RSSIdle, f.RSSPeak, f.CenterCPU, f.HarnessCPU)
	}
	if f.Pushes == 0 || f.PushedRecords < f.Delivered || f.CPUPerRecordNs <= 0 || f.CPUPerFrameNs <= 0 {
		t.Errorf("pushes %d of %d records; cpu per record %.0f ns, per frame %.0f ns", f.Pushes, f.PushedRecords, f.CPUPerRecordNs, f.CPUPerFrameNs)
	}

	var sb strings.Builder
	if err := WriteFanoutTable(&sb, rs); err != nil || !strings.Contains(sb.String(), "per record") {
		t.Errorf("table: %v\n%s", err, sb.String())
	}
	dir := t.TempDir()
	if err := WriteFanoutJSON(filepath.Join(dir, "f.json"), rs); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(filepath.Join(dir, "f.json"))
	if err != nil || len(back) != 1 || back[0].P99 != r.P99 || back[0].Workload != "fanout" {
		t.Errorf("the JSON does not read back as Results: %v %+v", err, back)
	}
	if err := WriteFanoutPlotFile(filepath.Join(dir, "f.svg"), "fanout", rs); err != nil {
		t.Error(err)
	}
	t.Logf("smoke run took %v", time.Since(start))
}

// The marker survives the instance encoding and is found again.
func TestFanoutMarker(t *testing.T) {
	for _, c := range []struct{ phase, seq int }{{0, 0}, {1, 0}, {7, 12345}, {99, fanoutSeqSpan - 1}} {
		v, err := registry.EncodeInstance(fanoutInstance(42, 20, c.phase, c.seq))
		if err != nil {
			t.Fatal(err)
		}
		if len(v) < 200 || len(v) > 1000 {
			t.Errorf("value of %d bytes, want 200..1000", len(v))
		}
		m, ok := parseMarker(v)
		if !ok || m != uint64(c.phase*fanoutSeqSpan+c.seq) {
			t.Errorf("phase %d seq %d: parsed %d %v", c.phase, c.seq, m, ok)
		}
	}
	if _, ok := parseMarker([]byte("no marker here")); ok {
		t.Error("a value without a marker parsed")
	}
}

// Half the agents are wide; the narrow ones share the services out.
func TestFanoutPlan(t *testing.T) {
	cfg := FanoutConfig{Config: Config{Entries: 100}, Services: 10}.withDefaults()
	agents := fanoutPlan(cfg, 7)
	wide, records := 0, 0
	for _, a := range agents {
		if a.services == nil {
			wide++
			if a.want != 100 || len(a.prefixes) != 1 || a.prefixes[0] != "svc/" {
				t.Errorf("wide agent %+v", a.prefixes)
			}
			continue
		}
		if len(a.services) != 2 || a.want != 20 || !strings.HasPrefix(a.prefixes[0], "svc/service-") {
			t.Errorf("narrow agent %v wants %d", a.prefixes, a.want)
		}
		records += a.want
	}
	if wide != 3 {
		t.Errorf("%d wide agents of 7 at 0.5, want 3", wide)
	}
}

// A push frame reads the same whether it is scanned in the read buffer
// (small frames) or decoded as it streams in (frames larger than the
// buffer).
func TestFanoutPushPaths(t *testing.T) {
	var recs []registry.Record
	for i := range 5 {
		v, err := registry.EncodeInstance(fanoutInstance(i, 3, 4, 100+i))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, registry.Record{Key: fanoutInstance(i, 3, 4, 0).Key(), Value: v, Rev: uint64(i + 1),
			Version: registry.Version{HLC: 7, Origin: "c1"}, WID: "w"})
	}
	type push struct { // registry's pushOut
		SubID    uint64            `msgpack:"sub_id"`
		Snapshot bool              `msgpack:"snapshot,omitempty"`
		Prefixes []string          `msgpack:"prefixes,omitempty"`
		Records  []registry.Record `msgpack:"records"`
		Rev      uint64            `msgpack:"rev"`
		More     bool              `msgpack:"more,omitempty"`
		CenterID string            `msgpack:"center_id"`
	}
	for _, body := range []push{
		{SubID: 1, Snapshot: true, Prefixes: []string{"svc/"}, Records: recs, Rev: 5, More: true, CenterID: "c1"},
		{SubID: 1, Records: recs[:2], Rev: 9, CenterID: "c1"},
	} {
		payload, err := msgpack.Marshal([]any{wirePush, 0, body})
		if err != nil {
			t.Fatal(err)
		}
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
		frame = append(frame, payload...)
		for _, size := range []int{16, 64 << 10} { // bufio's least; the agents'
			a := &fanoutAgent{buf: make([]byte, 8)}
			a.br = bufio.NewReaderSize(bytes.NewReader(frame), size)
			a.fr.br = a.br
			a.dec = msgpack.NewDecoder(&a.fr)
			ok, err := a.readFrame()
			if err != nil || !ok {
				t.Fatalf("buffer %d: push %v, %v", size, ok, err)
			}
			if a.snapshot != body.Snapshot || a.more != body.More || len(a.marks) != len(body.Records) {
				t.Errorf("buffer %d: snapshot %v more %v, %d marks; want %v %v %d", size, a.snapshot, a.more, len(a.marks), body.Snapshot, body.More, len(body.Records))
			}
			for i, m := range a.marks {
				if m != uint64(4*fanoutSeqSpan+100+i) {
					t.Errorf("buffer %d: mark %d is %d", size, i, m)
				}
			}
			if _, err := a.br.ReadByte(); err != io.EOF {
				t.Errorf("buffer %d: the frame was not read to its end (%v)", size, err)
			}
		}
	}
}

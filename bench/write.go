package bench

import (
	"context"
	"fmt"
	"os"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
	"github.com/shmreg/shmreg/shm"
)

// WriteConfig configures the write workload.
type WriteConfig struct {
	Config
	// HeartbeatEntries is how many instances the center holds for the
	// heartbeat rows (each heartbeat renews one of them). Default
	// min(Entries, 10_000): a heartbeat's cost does not depend on how many
	// other instances exist, and registering them over TCP takes time.
	HeartbeatEntries int
}

// Write measures changes to a region filled with cfg.Entries entries by its
// one writer (upserts of existing keys, one commit each; then deletes
// alternating with re-inserts, one commit each; then upserts in batches of
// 100, one commit per batch), and heartbeats absorbed by one center from 1
// and cfg.Clients connections.
func Write(ctx context.Context, cfg WriteConfig) ([]Result, error) {
	if cfg.Clients <= 0 {
		cfg.Clients = 16
	}
	cfg.Config = cfg.Config.withDefaults()
	if cfg.HeartbeatEntries <= 0 {
		cfg.HeartbeatEntries = min(cfg.Entries, 10_000)
	}
	dir, d, err := cfg.setup("write")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	defer cfg.progressDone()
	cfg.progress("filling a region with %d entries...", cfg.Entries)
	w, _, err := FillRegion(d, dir, "write")
	if err != nil {
		return nil, err
	}
	defer w.Close()
	var out []Result
	for _, wl := range regionWrites(w, d) {
		cfg.progress("write: region %s, %d x %v...", wl.name, cfg.Run.Reps, cfg.Run.Duration)
		reps, err := MeasureReps(ctx, wl.sys, d, 1, cfg.Run)
		if err != nil {
			return nil, fmt.Errorf("region %s: %w", wl.name, err)
		}
		for _, s := range reps {
			s.Ops *= uint64(wl.perOp)
			for i := range s.PerClient {
				s.PerClient[i] *= uint64(wl.perOp)
			}
		}
		r := Summarize("shm", wl.name, 1, reps)
		r.Entries, r.Note = d.Len(), wl.note
		out = append(out, r)
	}
	hb, err := heartbeats(ctx, cfg, d)
	if err != nil {
		return nil, err
	}
	out = append(out, hb...)
	return stamp(out, ThisMachine()), nil
}

// funcSystem is a System whose every client is the same function (the
// region has one writer; its calls are serialized anyway).
type funcSystem struct {
	name string
	l    Lookup
}

func (s funcSystem) Name() string                                { return s.name }
func (s funcSystem) Client(context.Context, int) (Lookup, error) { return s.l, nil }
func (s funcSystem) Close() error                                { return nil }

type regionWrite struct {
	name  string
	sys   System
	perOp int // entries changed by one call
	note  string
}

func regionWrites(w *shm.Writer, d *Dataset) []regionWrite {
	// Upserts alternate each key between its value and a same-sized other
	// value, so that every Put really changes the entry.
	alt := make([]byte, len(d.Values[0]))
	flip := false
	upsert := func(_ context.Context, key []byte) error {
		flip = !flip
		if flip {
			return w.Put(key, alt)
		}
		return w.Put(key, d.Values[0])
	}
	// Deletes: a key present is deleted; a key already deleted is put
	// back, so the region keeps about as many entries as it started with.
	churn := func(_ context.Context, key []byte) error {
		found, err := w.Delete(key)
		if err != nil || found {
			return err
		}
		return w.Put(key, d.Values[0])
	}
	var (
		b   shm.Batch
		pos int
	)
	batch := func(_ context.Context, _ []byte) error {
		b.Reset()
		for range 100 {
			i := d.Order[pos%len(d.Order)]
			pos++
			b.Put(d.Keys[i], d.Values[(int(i)+pos)%d.Len()])
		}
		return w.Commit(&b)
	}
	return []regionWrite{
		{"upsert", funcSystem{"shm", upsert}, 1, "one Put (one commit) each"},
		{"delete", funcSystem{"shm", churn}, 1, "Delete of a present key, or re-insert of a deleted one, one commit each"},
		{"upsert-batch", funcSystem{"shm", batch}, 100, "Commit of 100 Puts; ops are entries; latency is per commit"},
	}
}

// heartbeats registers HeartbeatEntries instances on a center and measures
// Conn.Heartbeat of one key a call from 1 and cfg.Clients connections.
func heartbeats(ctx context.Context, cfg WriteConfig, d *Dataset) ([]Result, error) {
	cfg.progress("write: registering %d instances on a center...", cfg.HeartbeatEntries)
	c, err := StartCenter(ctx, pair.Options{Options: center.Options{Insecure: true, SelfPreservation: -1}})
	if err != nil {
		return nil, err
	}
	defer StopCenter(c)
	if err := RegisterAll(ctx, c.Addr().String(), 0, cfg.HeartbeatEntries, 16); err != nil {
		return nil, err
	}
	// The heartbeat rows use a dataset whose lookup order covers only the
	// registered instances.
	hd, err := NewDataset(cfg.HeartbeatEntries, cfg.Seed)
	if err != nil {
		return nil, err
	}
	sys := &heartbeatSystem{addr: c.Addr().String()}
	defer sys.Close()
	var out []Result
	for _, n := range []int{1, cfg.Clients} {
		cfg.progress("write: center heartbeats, %d connection(s), %d x %v...", n, cfg.Run.Reps, cfg.Run.Duration)
		reps, err := MeasureReps(ctx, sys, hd, n, cfg.Run)
		if err != nil {
			return nil, fmt.Errorf("heartbeat: %w", err)
		}
		r := Summarize("center", "heartbeat", n, reps)
		r.Entries = cfg.HeartbeatEntries
		out = append(out, r)
		if n == 1 && cfg.Clients == 1 {
			break
		}
	}
	return out, nil
}

// heartbeatSystem: each client is a connection renewing one instance a
// call.
type heartbeatSystem struct {
	addr  string
	conns []*registry.Conn
}

func (s *heartbeatSystem) Name() string { return "center" }

func (s *heartbeatSystem) Client(ctx context.Context, _ int) (Lookup, error) {
	conn, err := registry.Dial(ctx, s.addr, registry.DialOptions{Role: registry.RoleInstance, Name: "bench-heartbeat"})
	if err != nil {
		return nil, err
	}
	s.conns = append(s.conns, conn)
	return func(ctx context.Context, key []byte) error {
		missing, err := conn.Heartbeat(ctx, string(key))
		if err != nil {
			return err
		}
		if len(missing) != 0 {
			return fmt.Errorf("heartbeat: center does not know %s", missing[0])
		}
		return nil
	}, nil
}

func (s *heartbeatSystem) Close() error {
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	return nil
}

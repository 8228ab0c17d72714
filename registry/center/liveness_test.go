package center

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/internal/wire"
)

// fakeBackend records the writes the front asks for and applies nothing;
// enough to test the front's own logic without a store.
type fakeBackend struct {
	ops []Op
}

func (b *fakeBackend) ID() string                           { return "c-test" }
func (b *fakeBackend) Start(context.Context, Front) error   { return nil }
func (b *fakeBackend) Close() error                         { return nil }
func (b *fakeBackend) Read(f func(View))                    { f(fakeView{}) }
func (b *fakeBackend) ServePeer(PeerConn, wire.Frame) error { return nil }
func (b *fakeBackend) Probe() error                         { return nil }
func (b *fakeBackend) HeartbeatSlack() time.Duration        { return 0 }
func (b *fakeBackend) Judges(*wire.Record) bool             { return true }
func (b *fakeBackend) Write(ops []Op, done func([]Result, error)) {
	b.ops = append(b.ops, ops...)
	res := make([]Result, len(ops))
	for i := range res {
		res[i].Applied = true
	}
	done(res, nil)
}

type fakeView struct{}

func (fakeView) Rev() uint64                  { return 0 }
func (fakeView) Len() int                     { return 0 }
func (fakeView) Get(string) *wire.Record      { return nil }
func (fakeView) Scan(func(*wire.Record) bool) {}
func (fakeView) CanResume(uint64) bool        { return false }

func newTestFront(t testing.TB, opts Options) (*Center, *fakeBackend) {
	t.Helper()
	b := &fakeBackend{}
	c, err := New(opts, b)
	if err != nil {
		t.Fatal(err)
	}
	return c, b
}

func instanceRecord(t testing.TB, key string, ttl time.Duration, hlc uint64) *wire.Record {
	t.Helper()
	svc, id, _ := wire.ParseInstanceKey(key)
	v, err := wire.EncodeInstance(wire.Instance{Service: svc, ID: id, Address: "10.0.0.1", Port: 80, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return &wire.Record{Key: key, Value: v, Version: wire.Version{HLC: hlc, Origin: "c-test"}}
}

// TestSweepMatchesANaiveModel: under random registrations, heartbeats,
// closed connections and removals on a clock of its own, the deadline heap
// expires exactly the leases a scan of every lease would, at the same
// sweeps.
func TestSweepMatchesANaiveModel(t *testing.T) {
	for seed := range uint64(20) {
		c, b := newTestFront(t, Options{SelfPreservation: -1, DisconnectGrace: 300 * time.Millisecond})
		l := c.live
		now := time.Unix(1_000_000, 0)
		l.now = func() time.Time { return now }
		type modelLease struct {
			deadline time.Time
			ttl      time.Duration
			conn     uint64
		}
		model := map[string]*modelLease{}
		r := rand.New(rand.NewPCG(seed, 1))
		var hlc uint64
		for step := range 3000 {
			key := wire.InstanceKey(fmt.Sprint("s", r.IntN(4)), fmt.Sprint(r.IntN(60)))
			switch op := r.IntN(10); {
			case op < 3: // a registration (maybe tied to a connection)
				ttl := time.Duration(100+r.IntN(900)) * time.Millisecond
				conn := uint64(r.IntN(3))
				hlc++
				l.upsert(instanceRecord(t, key, ttl, hlc), conn, now)
				model[key] = &modelLease{deadline: now.Add(ttl), ttl: ttl, conn: conn}
			case op < 7: // a heartbeat
				missing := l.touch([]string{key}, false)
				if m := model[key]; m != nil {
					m.deadline = now.Add(m.ttl)
					if len(missing) != 0 {
						t.Fatalf("seed %d step %d: heartbeat of %s said missing", seed, step, key)
					}
				} else if len(missing) != 1 {
					t.Fatalf("seed %d step %d: heartbeat of unknown %s not reported missing", seed, step, key)
				}
			case op < 8: // a connection closes
				conn := uint64(1 + r.IntN(2))
				l.connClosed(conn)
				for _, m := range model {
					if m.conn == conn {
						m.conn = 0
						if limit := now.Add(300 * time.Millisecond); m.deadline.After(limit) {
							m.deadline = limit
						}
					}
				}
			case op < 9: // deregistered
				l.remove(key)
				delete(model, key)
			default: // time passes and the sweeper runs
				now = now.Add(time.Duration(r.IntN(400)) * time.Millisecond)
				b.ops = nil
				l.sweep(now)
				var got, want []string
				for _, o := range b.ops {
					got = append(got, o.Key)
				}
				for k, m := range model {
					if !now.Before(m.deadline) {
						want = append(want, k)
					}
				}
				sort.Strings(got)
				sort.Strings(want)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("seed %d step %d: sweep expired %v, a scan would expire %v", seed, step, got, want)
				}
				for _, k := range got { // what the commit's Publish does
					l.remove(k)
					delete(model, k)
				}
			}
		}
	}
}

// BenchmarkSweep: a sweep with nothing due costs the same at 1K and 100K
// registered instances (the old sweep scanned every lease).
func BenchmarkSweep(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c, _ := newTestFront(b, Options{SelfPreservation: -1})
			l := c.live
			now := time.Now()
			for i := range n {
				l.upsert(instanceRecord(b, wire.InstanceKey("svc", fmt.Sprint(i)), time.Hour, uint64(i+1)), 0, now)
			}
			b.ResetTimer()
			for i := range b.N {
				l.sweep(now.Add(time.Duration(i) * time.Millisecond))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/lease/sweep")
		})
	}
}

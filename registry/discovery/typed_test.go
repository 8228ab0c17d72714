package discovery

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmreg/shmreg/shm"
	"github.com/vmihailenco/msgpack/v5"
)

// limitsV1 is what an older producer wrote; limitsV2 is what the reader
// expects now.
type limitsV1 struct {
	QPS   int    `msgpack:"qps"`
	Owner string `msgpack:"owner"`
}

type limitsV2 struct {
	QPS   int    `msgpack:"qps"`
	Owner string `msgpack:"owner"`
	Burst int    `msgpack:"burst"`
	Zone  string `msgpack:"zone"`
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeAgent serves the agent's control socket: a refresh request rewrites
// the key with fresh (through the region's writer) before answering ok.
type fakeAgent struct {
	t        *testing.T
	ln       net.Listener
	w        *shm.Writer
	fresh    map[string][]byte
	requests atomic.Int32
	hold     chan struct{} // if non-nil, each request waits for it to close
	fail     string        // if set, answer {"ok":false,"error":fail}
	wg       sync.WaitGroup
	mu       sync.Mutex // serialises writes through w
	keys     []string
}

func startFakeAgent(t *testing.T, w *shm.Writer, fresh map[string][]byte) (*fakeAgent, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{t: t, ln: ln, w: w, fresh: fresh}
	a.wg.Add(1)
	go a.serve()
	t.Cleanup(func() { ln.Close(); a.wg.Wait() })
	return a, path
}

func (a *fakeAgent) serve() {
	defer a.wg.Done()
	for {
		conn, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer conn.Close()
			line, err := bufio.NewReader(conn).ReadBytes('\n')
			if err != nil {
				a.t.Errorf("fake agent: read: %v", err)
				return
			}
			var req controlRequest
			if err := json.Unmarshal(line, &req); err != nil || req.Op != "refresh" {
				a.t.Errorf("fake agent: bad request %q", line)
				return
			}
			a.requests.Add(1)
			if a.hold != nil {
				<-a.hold
			}
			reply := controlReply{OK: true}
			a.mu.Lock()
			a.keys = append(a.keys, req.Key)
			switch {
			case a.fail != "":
				reply = controlReply{Error: a.fail}
			case a.fresh[req.Key] != nil:
				if err := a.w.Put([]byte(req.Key), a.fresh[req.Key]); err != nil {
					reply = controlReply{Error: err.Error()}
				}
			default:
				reply = controlReply{Error: "unknown key"}
			}
			a.mu.Unlock()
			b, _ := json.Marshal(reply)
			conn.Write(append(b, '\n'))
		}()
	}
}

func (a *fakeAgent) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.keys)
}

// The whole story: an entry written by an older producer is read with the
// new struct, reported stale, refreshed by the agent (that key only), and
// then read fresh.
func TestGetIntoStaleThenRefreshed(t *testing.T) {
	w, _ := testRegion(t, Options{})
	fresh := limitsV2{QPS: 200, Owner: "team-b", Burst: 50, Zone: "eu-1"}
	agent, sock := startFakeAgent(t, w, map[string][]byte{"config/limits": mustMarshal(t, fresh)})
	c := New(readerOf(t, w), Options{AgentSocket: sock})
	t.Cleanup(func() { c.Close() })
	if err := w.Put([]byte("config/limits"), mustMarshal(t, limitsV1{QPS: 100, Owner: "team-a"})); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte("config/other"), mustMarshal(t, limitsV1{QPS: 1})); err != nil {
		t.Fatal(err)
	}
	otherBefore, _ := c.Reader().Get([]byte("config/other"))

	var got limitsV2
	err := c.GetInto("config/limits", &got)
	var se *StaleError
	if !errors.Is(err, ErrStale) || !errors.As(err, &se) {
		t.Fatalf("GetInto err = %v, want ErrStale", err)
	}
	if !slices.Equal(se.Missing, []string{"burst", "zone"}) || se.Key != "config/limits" {
		t.Fatalf("StaleError %+v", se)
	}
	if got != (limitsV2{QPS: 100, Owner: "team-a"}) {
		t.Fatalf("stale value decoded as %+v", got)
	}
	// The background refresh reaches the agent, which rewrites the key.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = limitsV2{}
		err = c.GetInto("config/limits", &got)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrStale) || time.Now().After(deadline) {
			t.Fatalf("after refresh: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got != fresh {
		t.Fatalf("fresh value %+v, want %+v", got, fresh)
	}
	if keys := agent.seen(); !slices.Equal(keys, []string{"config/limits"}) {
		t.Fatalf("agent asked to refresh %v", keys)
	}
	// Nothing else was touched.
	if otherAfter, _ := c.Reader().Get([]byte("config/other")); string(otherAfter) != string(otherBefore) {
		t.Fatal("another key changed")
	}
}

func readerOf(t *testing.T, w *shm.Writer) *shm.Reader {
	t.Helper()
	r, err := shm.Open(w.Path(), shm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestGetFreshIntoWaitsForTheRefresh(t *testing.T) {
	w, _ := testRegion(t, Options{})
	fresh := limitsV2{QPS: 7, Owner: "o", Burst: 1, Zone: "z"}
	agent, sock := startFakeAgent(t, w, map[string][]byte{"config/limits": mustMarshal(t, fresh)})
	c := New(readerOf(t, w), Options{AgentSocket: sock})
	t.Cleanup(func() { c.Close() })
	if err := w.Put([]byte("config/limits"), mustMarshal(t, limitsV1{QPS: 1})); err != nil {
		t.Fatal(err)
	}
	var got limitsV2
	if err := c.GetFreshInto(context.Background(), "config/limits", &got); err != nil {
		t.Fatal(err)
	}
	if got != fresh || agent.requests.Load() != 1 {
		t.Fatalf("got %+v after %d requests", got, agent.requests.Load())
	}
	// A fresh entry asks for nothing.
	if err := c.GetFreshInto(context.Background(), "config/limits", &got); err != nil || agent.requests.Load() != 1 {
		t.Fatalf("fresh read: %v, %d requests", err, agent.requests.Load())
	}
}

func TestRefreshDedupesConcurrentRequests(t *testing.T) {
	w, _ := testRegion(t, Options{})
	agent, sock := startFakeAgent(t, w, map[string][]byte{"k": mustMarshal(t, limitsV2{Zone: "z", Burst: 1})})
	agent.hold = make(chan struct{})
	c := New(readerOf(t, w), Options{AgentSocket: sock})
	t.Cleanup(func() { c.Close() })
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- c.Refresh(context.Background(), "k") }()
	}
	// Wait until the one request is at the agent, then let it answer.
	for agent.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a duplicate to show up
	close(agent.hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := agent.requests.Load(); n != 1 {
		t.Fatalf("%d requests for one key, want 1", n)
	}
}

// A key that stays stale (the center holds the old schema too) is not
// re-requested on every read.
func TestGetIntoLimitsBackgroundRefreshes(t *testing.T) {
	w, _ := testRegion(t, Options{})
	old := mustMarshal(t, limitsV1{QPS: 1})
	agent, sock := startFakeAgent(t, w, map[string][]byte{"k": old})
	c := New(readerOf(t, w), Options{AgentSocket: sock, StaleRefreshInterval: time.Hour})
	t.Cleanup(func() { c.Close() })
	if err := w.Put([]byte("k"), old); err != nil {
		t.Fatal(err)
	}
	var v limitsV2
	for range 50 {
		if err := c.GetInto("k", &v); !errors.Is(err, ErrStale) {
			t.Fatalf("err = %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(agent.seen()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if n := agent.requests.Load(); n != 1 {
		t.Fatalf("%d refresh requests for 50 stale reads, want 1", n)
	}
}

func TestRefreshErrors(t *testing.T) {
	w, _ := testRegion(t, Options{})
	if err := w.Put([]byte("k"), mustMarshal(t, limitsV1{QPS: 3})); err != nil {
		t.Fatal(err)
	}
	agent, sock := startFakeAgent(t, w, nil)
	agent.fail = "no center reachable"
	c := New(readerOf(t, w), Options{AgentSocket: sock})
	t.Cleanup(func() { c.Close() })
	var got limitsV2
	err := c.GetFreshInto(context.Background(), "k", &got)
	if !errors.Is(err, ErrStale) || !errors.Is(err, ErrRefresh) || got.QPS != 3 {
		t.Fatalf("agent refusal: %v (value %+v)", err, got)
	}
	// No agent configured.
	noAgent := New(readerOf(t, w), Options{})
	t.Cleanup(func() { noAgent.Close() })
	if err := noAgent.GetFreshInto(context.Background(), "k", &got); !errors.Is(err, ErrStale) || !errors.Is(err, ErrNoAgent) {
		t.Fatalf("no agent: %v", err)
	}
	// Agent socket that nobody listens on.
	gone := New(readerOf(t, w), Options{AgentSocket: filepath.Join(t.TempDir(), "none.sock")})
	t.Cleanup(func() { gone.Close() })
	if err := gone.Refresh(context.Background(), "k"); !errors.Is(err, ErrRefresh) {
		t.Fatalf("dead socket: %v", err)
	}
}

func TestGetIntoDecodingRules(t *testing.T) {
	w, c := testRegion(t, Options{})
	put := func(k string, v any) {
		if err := w.Put([]byte(k), mustMarshal(t, v)); err != nil {
			t.Fatal(err)
		}
	}
	type base struct {
		Region string `msgpack:"region"`
	}
	type rules struct {
		base                     // embedded: its fields count
		Name     string          `msgpack:"name"`
		Note     string          `msgpack:"note,omitempty"` // optional
		Internal string          `msgpack:"-"`              // never stored
		Untagged int             // stored under its Go name
		Nested   struct{ X int } `msgpack:"nested"` // nested fields are not checked
		private  int
	}
	put("full", map[string]any{"region": "r", "name": "n", "Untagged": 1, "nested": map[string]any{}})
	put("noRegion", map[string]any{"name": "n", "Untagged": 1, "nested": map[string]any{}})
	put("notAMap", 42)
	put("extra", map[string]any{"region": "r", "name": "n", "Untagged": 1, "nested": map[string]any{}, "future": true})
	if err := w.Put([]byte("garbage"), []byte{0xc1}); err != nil {
		t.Fatal(err)
	}
	var v rules
	if err := c.GetInto("full", &v); err != nil || v.Region != "r" || v.Untagged != 1 {
		t.Fatalf("full: %v %+v", err, v)
	}
	var se *StaleError
	if err := c.GetInto("noRegion", &v); !errors.As(err, &se) || !slices.Equal(se.Missing, []string{"region"}) {
		t.Fatalf("noRegion: %v", err)
	}
	if err := c.GetInto("extra", &v); err != nil {
		t.Fatalf("extra fields are not staleness: %v", err)
	}
	var n int
	if err := c.GetInto("notAMap", &n); err != nil || n != 42 {
		t.Fatalf("notAMap: %v %d", err, n)
	}
	if err := c.GetInto("notAMap", &v); err == nil || errors.Is(err, ErrStale) {
		t.Fatalf("int into struct: %v", err)
	}
	if err := c.GetInto("garbage", &v); err == nil || errors.Is(err, ErrStale) {
		t.Fatalf("garbage: %v", err)
	}
	if err := c.GetInto("missing", &v); !errors.Is(err, shm.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if err := c.GetInto("full", v); err == nil {
		t.Fatal("non-pointer destination accepted")
	}
	_ = v.private
}

// Deeply nested values are refused before the recursive decoder sees them.
func TestGetIntoRefusesDeepNesting(t *testing.T) {
	w, c := testRegion(t, Options{})
	deep := make([]byte, 1<<20)
	for i := range deep {
		deep[i] = 0x91 // array of one element, nested a million times
	}
	if err := w.Put([]byte("deep"), deep); err != nil {
		t.Fatal(err)
	}
	var v any
	if err := c.GetInto("deep", &v); err == nil {
		t.Fatal("a million nested arrays decoded")
	}
	// An unknown extension whose payload the library would read as a map
	// of 800 million entries.
	if err := w.Put([]byte("ext"), []byte("\xd80\xdf00\x050\x1200000000;0")); err != nil {
		t.Fatal(err)
	}
	if err := c.GetInto("ext", &v); err == nil {
		t.Fatal("unknown extension decoded")
	}
	// The timestamp extension (time.Time) is fine.
	type stamped struct {
		At time.Time `msgpack:"at"`
	}
	at := time.Unix(1700000000, 5).UTC()
	if err := w.Put([]byte("time"), mustMarshal(t, stamped{At: at})); err != nil {
		t.Fatal(err)
	}
	var s stamped
	if err := c.GetInto("time", &s); err != nil || !s.At.Equal(at) {
		t.Fatalf("time: %v %v", err, s.At)
	}
}

// FuzzMapKeys checks the stale detector's decoder on arbitrary bytes: it
// never panics, and when the msgpack library reads the bytes as a map with
// string keys, mapKeys reports the same keys.
func FuzzMapKeys(f *testing.F) {
	f.Add(mustMarshal(f, limitsV1{QPS: 1, Owner: "x"}))
	f.Add(mustMarshal(f, limitsV2{Zone: "z"}))
	f.Add(mustMarshal(f, map[string]any{"a": []any{1, "x", map[string]any{"b": nil}}, "c": 1.5}))
	f.Add(mustMarshal(f, []int{1, 2, 3}))
	f.Add([]byte{0xde, 0x00, 0x01, 0xd9, 0x01, 'k', 0xc0})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa1, 'k', 0x91, 0x91, 0x91})
	f.Add([]byte{0xc1})
	f.Add([]byte("\xd80\xdf00\x050\x1200000000;0")) // unknown extension hiding a huge map
	f.Add(mustMarshal(f, map[string]any{"t": time.Unix(1, 2)}))
	f.Add([]byte{})
	sf := newStructFields(reflectTypeOf[limitsV2]())
	f.Fuzz(func(t *testing.T, b []byte) {
		var keys []string
		isMap, err := mapKeys(b, func(k []byte) { keys = append(keys, string(k)) })
		missing, merr := sf.missingFields(b)
		if (err == nil) != (merr == nil) {
			t.Fatalf("mapKeys err %v, missingFields err %v", err, merr)
		}
		if err != nil {
			return
		}
		var m map[string]any
		if uerr := msgpack.Unmarshal(b, &m); uerr != nil || !isMap || m == nil {
			return
		}
		want := map[string]bool{}
		for k := range m {
			want[k] = true
		}
		got := map[string]bool{}
		for _, k := range keys {
			got[k] = true
		}
		if len(got) != len(want) {
			t.Fatalf("keys %v, library read %v", keys, m)
		}
		for k := range want {
			if !got[k] {
				t.Fatalf("key %q missed", k)
			}
		}
		for _, name := range sf.required {
			if want[name] == slices.Contains(missing, name) {
				t.Fatalf("field %q: present %v, reported missing %v", name, want[name], missing)
			}
		}
	})
}

package shm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

// benchKey is the key shape of the benchmarks: a service instance key.
func benchKey(i int) []byte {
	return []byte(fmt.Sprintf("svc/service-%04d/instance-%06d", i%10000, i))
}

// benchValue is about 200 bytes, like an encoded instance.
func benchValue(i int) []byte {
	v := make([]byte, 200)
	for j := range v {
		v[j] = byte(i + j)
	}
	return v
}

// benchData is a filled region and a Go map holding the same entries,
// shared by the benchmarks of one size.
type benchData struct {
	dir   string
	r     *Reader
	m     map[string][]byte
	order [][]byte // keys in one shared random order
}

type benchWhere struct {
	n    int
	base string // the directory the region's own directory is made in
	v1   bool   // every value apart from its node, as layout version 1 placed them
}

var (
	benchMu    sync.Mutex
	benchCache = map[benchWhere]*benchData{}
)

// benchRegion is a region of n entries where regions live in production:
// on /dev/shm (tmpfs) when the machine has it.
func benchRegion(b *testing.B, n int) *benchData {
	return benchRegionIn(b, benchWhere{n: n, base: benchBase()})
}

func benchBase() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return ""
}

func benchRegionIn(b *testing.B, where benchWhere) *benchData {
	n, base := where.n, where.base
	benchMu.Lock()
	defer benchMu.Unlock()
	if d, ok := benchCache[where]; ok {
		return d
	}
	dir, err := os.MkdirTemp(base, "shmreg-bench")
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Dir: dir, Size: int64(n) * 512}
	if where.v1 {
		opts.inlineMax = -1
	}
	w, err := OpenWriter("bench", opts)
	if err != nil {
		b.Fatal(err)
	}
	d := &benchData{dir: dir, m: make(map[string][]byte, n)}
	var batch Batch
	for i := 0; i < n; i++ {
		k, v := benchKey(i), benchValue(i)
		batch.Put(k, v)
		d.m[string(k)] = v
		if batch.Len() == 4096 || i == n-1 {
			if err := w.Commit(&batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	w.Close()
	if d.r, err = Open("bench", opts); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	d.order = make([][]byte, 1<<16)
	for i := range d.order {
		d.order[i] = benchKey(rng.IntN(n))
	}
	benchCache[where] = d
	return d
}

var sink int

// BenchmarkGet compares a zero-copy lookup in the region (Reader.View, and
// Session.View, which keeps its reader slot between lookups) with a lookup
// in an in-process Go map holding the same keys, looked up in the same
// order. All read the value's first and last byte, so all touch the value's
// memory.
func BenchmarkGet(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"100k", 100_000}, {"1m", 1_000_000}} {
		b.Run("shm-"+size.name, func(b *testing.B) {
			d := benchRegion(b, size.n)
			touch := func(v []byte) error { sink += int(v[0]) + int(v[len(v)-1]); return nil }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.r.View(d.order[i&(len(d.order)-1)], touch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
		b.Run("session-"+size.name, func(b *testing.B) {
			d := benchRegion(b, size.n)
			s, err := d.r.Session()
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			touch := func(v []byte) error { sink += int(v[0]) + int(v[len(v)-1]); return nil }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.View(d.order[i&(len(d.order)-1)], touch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
		b.Run("map-"+size.name, func(b *testing.B) {
			d := benchRegion(b, size.n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v, ok := d.m[string(d.order[i&(len(d.order)-1)])]
				if !ok {
					b.Fatal("missing")
				}
				sink += int(v[0]) + int(v[len(v)-1])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}

// BenchmarkGetCopy is Get, which returns a copy (one allocation).
func BenchmarkGetCopy(b *testing.B) {
	d := benchRegion(b, 100_000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		v, err := d.r.Get(d.order[i&(len(d.order)-1)])
		if err != nil {
			b.Fatal(err)
		}
		sink += len(v)
	}
}

// BenchmarkGetParallel runs zero-copy lookups from GOMAXPROCS goroutines.
func BenchmarkGetParallel(b *testing.B) {
	d := benchRegion(b, 100_000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(d.order))
		local := 0
		touch := func(v []byte) error { local += int(v[0]); return nil }
		for pb.Next() {
			if err := d.r.View(d.order[i&(len(d.order)-1)], touch); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkPut upserts existing keys of a 100K-entry region, one commit each.
// BenchmarkPut overwrites random keys of a 100K-entry region, one commit
// each. "inline" is layout version 2 (a 200-byte value lives in its node, so
// an overwrite replaces the node: a list search); "v1" places every value
// apart, as version 1 did (an overwrite swaps one word).
func BenchmarkPut(b *testing.B) {
	for _, c := range []struct {
		name      string
		inlineMax int
	}{{"inline", 0}, {"v1", -1}} {
		b.Run(c.name, func(b *testing.B) {
			opts := Options{Dir: b.TempDir(), Size: 256 << 20, inlineMax: c.inlineMax}
			w, err := OpenWriter("put", opts)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			const n = 100_000
			var batch Batch
			for i := 0; i < n; i++ {
				batch.Put(benchKey(i), benchValue(i))
			}
			if err := w.Commit(&batch); err != nil {
				b.Fatal(err)
			}
			keys := make([][]byte, n)
			for i := range keys {
				keys[i] = benchKey(i)
			}
			val := benchValue(1)
			rng := rand.New(rand.NewPCG(5, 6))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := w.Put(keys[rng.IntN(n)], val); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "upserts/s")
		})
	}
}

func TestMain(m *testing.M) {
	code := runTests(m)
	for _, d := range benchCache {
		d.r.Close()
		os.RemoveAll(d.dir)
	}
	os.Exit(code)
}

// BenchmarkLookupCost splits a lookup's cost (issue 18): at 1 entry every
// lookup is the same key, whose memory stays in the cache, so the figure
// is the fixed cost (slot stores, fault guard, hashing, the callback); at
// 10K, 100K and 1M random keys it adds the memory cost, the cache and TLB
// misses. Each size runs the Go map, Session.View and Reader.View on the
// same keys in the same order. 10M entries (about 5 GB of region) only with
// SHMREG_BENCH_10M=1. With SHMREG_BENCH_HUGE_DIR set to a tmpfs mounted with
// huge=within_size (or advise), session-huge reads the same entries from a
// region there, backed by transparent huge pages, beside the others; it
// reports the share of the mapping that huge pages back (huge-%).
// session-v1 reads the same entries from a region whose values all lie
// apart from their nodes, where layout version 1 put them: the layout
// change's before and after in one run.
// sessionLookups times b.N lookups of d's keys, in d's order, through one
// Session.
func sessionLookups(b *testing.B, d *benchData, touch func([]byte) error) {
	s, err := d.r.Session()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.View(d.order[i&(len(d.order)-1)], touch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupCost(b *testing.B) {
	sizes := []int{1, 10_000, 100_000, 1_000_000}
	if os.Getenv("SHMREG_BENCH_10M") == "1" {
		sizes = append(sizes, 10_000_000)
	}
	touch := func(v []byte) error { sink += int(v[0]) + int(v[len(v)-1]); return nil }
	for _, n := range sizes {
		b.Run(fmt.Sprintf("map/n=%d", n), func(b *testing.B) {
			d := benchRegion(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				v := d.m[string(d.order[i&(len(d.order)-1)])]
				sink += int(v[0]) + int(v[len(v)-1])
			}
		})
		b.Run(fmt.Sprintf("session/n=%d", n), func(b *testing.B) {
			sessionLookups(b, benchRegion(b, n), touch)
		})
		b.Run(fmt.Sprintf("session-v1/n=%d", n), func(b *testing.B) {
			sessionLookups(b, benchRegionIn(b, benchWhere{n: n, base: benchBase(), v1: true}), touch)
		})
		b.Run(fmt.Sprintf("reader/n=%d", n), func(b *testing.B) {
			d := benchRegion(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.r.View(d.order[i&(len(d.order)-1)], touch); err != nil {
					b.Fatal(err)
				}
			}
		})
		if huge := os.Getenv("SHMREG_BENCH_HUGE_DIR"); huge != "" {
			b.Run(fmt.Sprintf("session-huge/n=%d", n), func(b *testing.B) {
				d := benchRegionIn(b, benchWhere{n: n, base: huge})
				p, err := d.r.Pages()
				if err != nil {
					b.Fatal(err)
				}
				sessionLookups(b, d, touch)
				b.ReportMetric(100*float64(p.HugeMappedBytes)/float64(max(p.MappedBytes, 1)), "huge-%")
			})
		}
	}
}

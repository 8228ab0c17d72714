package skiplist

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

const testBase = 64

// bump is the simplest allocator: it never reuses memory.
type bump struct {
	next, end uint64
}

func (b *bump) Alloc(size uint64) (uint64, error) {
	off := (b.next + 7) &^ 7
	if off+size > b.end {
		return 0, errors.New("full")
	}
	b.next = off + size
	return off, nil
}

// testList is a writer plus the helpers a region would provide: it owns
// value storage through the same allocator.
type testList struct {
	mem   []byte
	alloc *bump
	w     *Writer
}

func newTestList(t testing.TB, size int) *testList {
	t.Helper()
	mem := make([]byte, size)
	a := &bump{next: testBase, end: uint64(size)}
	head, _ := a.Alloc(NodeSize(MaxHeight))
	if err := InitHead(mem, testBase, head); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(mem, testBase, head, a, 42)
	if err != nil {
		t.Fatal(err)
	}
	return &testList{mem: mem, alloc: a, w: w}
}

func (tl *testList) put(key, value []byte) error {
	off, err := tl.w.Find(key)
	if err != nil {
		return err
	}
	if off != 0 {
		v, err := tl.storeValue(value)
		if err != nil {
			return err
		}
		return tl.w.SetValue(off, v)
	}
	v, err := tl.storeValue(value)
	if err != nil {
		return err
	}
	off, err = tl.w.NewNode(key)
	if err != nil {
		return err
	}
	if _, err := tl.w.Link(off); err != nil {
		return err
	}
	return tl.w.SetValue(off, v)
}

// storeValue copies value into the pool and returns its pair word.
func (tl *testList) storeValue(value []byte) (uint64, error) {
	v, err := tl.alloc.Alloc(uint64(len(value)) + 1)
	if err != nil {
		return 0, err
	}
	copy(tl.mem[v:], value)
	return Pair(v, uint64(len(value))), nil
}

func (tl *testList) del(key []byte) (bool, error) {
	off, err := tl.w.Find(key)
	if err != nil || off == 0 {
		return false, err
	}
	w, _ := tl.w.ValueWord(off)
	if err := tl.w.SetValue(off, 0); err != nil {
		return false, err
	}
	return w != 0, tl.w.Unlink(off)
}

func (tl *testList) get(key []byte) ([]byte, bool) {
	off, err := tl.w.Find(key)
	if err != nil || off == 0 {
		return nil, false
	}
	w, _ := tl.w.ValueWord(off)
	if w == 0 {
		return nil, false
	}
	v, err := tl.w.Bytes(w)
	return v, err == nil
}

func scanAll(l *List, prefix []byte) ([]string, error) {
	var out []string
	for it := l.Seek(prefix); it.Valid(); it.Next() {
		if !bytes.HasPrefix(it.Key(), prefix) {
			break
		}
		out = append(out, string(it.Key())+"="+string(it.Value()))
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TestModel runs random operations against the list and a plain Go map and
// compares every answer and, periodically, the whole ordered scan.
func TestModel(t *testing.T) {
	tl := newTestList(t, 64<<20)
	model := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte { return []byte(fmt.Sprintf("svc/s%02d/i%04d", rng.IntN(20), rng.IntN(300))) }
	for i := 0; i < 40000; i++ {
		k := key()
		switch op := rng.IntN(10); {
		case op < 5:
			v := strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(40))
			if err := tl.put(k, []byte(v)); err != nil {
				t.Fatal(err)
			}
			model[string(k)] = v
		case op < 7:
			ok, err := tl.del(k)
			if err != nil {
				t.Fatal(err)
			}
			_, want := model[string(k)]
			if ok != want {
				t.Fatalf("delete %q: got %v want %v", k, ok, want)
			}
			delete(model, string(k))
		default:
			v, ok := tl.get(k)
			mv, mok := model[string(k)]
			if ok != mok || string(v) != mv {
				t.Fatalf("get %q: got %q,%v want %q,%v", k, v, ok, mv, mok)
			}
		}
		if i%5000 == 0 || i == 39999 {
			checkScan(t, &tl.w.List, model, "")
			checkScan(t, &tl.w.List, model, fmt.Sprintf("svc/s%02d/", rng.IntN(20)))
		}
	}
}

func checkScan(t *testing.T, l *List, model map[string]string, prefix string) {
	t.Helper()
	var want []string
	for k, v := range model {
		if strings.HasPrefix(k, prefix) {
			want = append(want, k+"="+v)
		}
	}
	sort.Strings(want)
	got, err := scanAll(l, []byte(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("scan %q: got %d entries, want %d\n got  %.5q\n want %.5q", prefix, len(got), len(want), got, want)
	}
}

func TestLinkDuplicateReturnsExisting(t *testing.T) {
	tl := newTestList(t, 1<<20)
	if err := tl.put([]byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	first, _ := tl.w.Find([]byte("a"))
	off, err := tl.w.NewNode([]byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tl.w.Link(off)
	if !errors.Is(err, ErrExists) || got != first {
		t.Fatalf("Link duplicate: got %d, %v; want %d, ErrExists", got, err, first)
	}
}

func TestAppenderBuildsSameList(t *testing.T) {
	tl := newTestList(t, 4<<20)
	a := NewAppender(tl.w)
	model := map[string]string{}
	for i := 0; i < 2000; i++ {
		k, v := fmt.Sprintf("k%05d", i), fmt.Sprintf("v%d", i)
		w, err := tl.storeValue([]byte(v))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Append([]byte(k), w); err != nil {
			t.Fatal(err)
		}
		model[k] = v
	}
	if _, err := a.Append([]byte("k00000"), Pair(testBase, 0)); err == nil {
		t.Fatal("out-of-order append accepted")
	}
	checkScan(t, &tl.w.List, model, "")
	for k, v := range model {
		got, ok := tl.get([]byte(k))
		if !ok || string(got) != v {
			t.Fatalf("get %q = %q,%v", k, got, ok)
		}
	}
}

// TestConcurrentReaders walks the list from other goroutines while the
// writer inserts, updates and deletes: every scan must be ordered and every
// value must be one the writer wrote for that key.
func TestConcurrentReaders(t *testing.T) {
	tl := newTestList(t, 64<<20)
	l := tl.w.List
	var stop atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var prev []byte
				for it := l.Seek(nil); it.Valid(); it.Next() {
					if prev != nil && bytes.Compare(prev, it.Key()) >= 0 {
						errc <- fmt.Errorf("out of order: %q then %q", prev, it.Key())
						return
					}
					if !bytes.HasPrefix(it.Value(), it.Key()) {
						errc <- fmt.Errorf("value %q does not belong to key %q", it.Value(), it.Key())
						return
					}
					prev = it.Key()
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		k := []byte(fmt.Sprintf("k%04d", rng.IntN(500)))
		if rng.IntN(4) == 0 {
			if _, err := tl.del(k); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := tl.put(k, []byte(fmt.Sprintf("%s#%d", k, i))); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestCorruptListIsAnError damages a valid list in the ways a bad file can
// and checks that every walk ends with ErrCorrupt instead of a crash or an
// endless loop.
func TestCorruptListIsAnError(t *testing.T) {
	cases := map[string]func(tl *testList, nodes []uint64){
		"next past end":   func(tl *testList, n []uint64) { put64(tl.mem, n[3]+24, uint64(len(tl.mem))+64) },
		"cycle":           func(tl *testList, n []uint64) { put64(tl.mem, n[5]+24, n[1]) },
		"key past end":    func(tl *testList, n []uint64) { put64(tl.mem, n[2]+8, Pair(uint64(len(tl.mem))-2, 100)) },
		"unaligned next":  func(tl *testList, n []uint64) { put64(tl.mem, n[4]+24, n[6]+3) },
		"height too tall": func(tl *testList, n []uint64) { tl.mem[n[1]+16] = 200 },
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			tl := newTestList(t, 1<<20)
			var nodes []uint64
			a := NewAppender(tl.w)
			for i := 0; i < 10; i++ {
				w, _ := tl.storeValue([]byte("v"))
				off, err := a.Append([]byte(fmt.Sprintf("k%d", i)), w)
				if err != nil {
					t.Fatal(err)
				}
				nodes = append(nodes, off)
			}
			damage(tl, nodes)
			_, err := scanAll(&tl.w.List, nil)
			if it := tl.w.Seek(nil); err == nil {
				for ; it.Valid(); it.Next() {
				}
				err = it.Err()
			}
			_, ferr := tl.w.Find([]byte("k9"))
			if !errors.Is(err, ErrCorrupt) && !errors.Is(ferr, ErrCorrupt) {
				t.Fatalf("damage %q went unnoticed: scan %v, find %v", name, err, ferr)
			}
		})
	}
}

func put64(b []byte, off, v uint64) {
	for i := 0; i < 8; i++ {
		b[off+uint64(i)] = byte(v >> (8 * i))
	}
}

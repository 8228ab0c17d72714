package lock

import (
	"path/filepath"
	"sync"
	"testing"
)

// Uncontended costs on a MAP_SHARED file mapping, side by side with
// sync.RWMutex (which works only inside one process) in the same run.

func benchLock(b *testing.B) *RW {
	path := filepath.Join(b.TempDir(), "ctl")
	mem := mapFile(b, path, Size)
	if err := Init(mem); err != nil {
		b.Fatal(err)
	}
	return mustNew(b, mem, Options{})
}

func reportRate(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acquires/s")
}

func BenchmarkLockUnlock(b *testing.B) {
	rw := benchLock(b)
	for b.Loop() {
		g, err := rw.Lock()
		if err != nil {
			b.Fatal(err)
		}
		if err := rw.Unlock(g); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

func BenchmarkRLockRUnlock(b *testing.B) {
	rw := benchLock(b)
	for b.Loop() {
		g, err := rw.RLock()
		if err != nil {
			b.Fatal(err)
		}
		if err := rw.RUnlock(g); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b)
}

// BenchmarkRLockParallel: readers on every core, never blocking each other
// (they touch the shared writer word and their own slots).
func BenchmarkRLockParallel(b *testing.B) {
	rw := benchLock(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g, err := rw.RLock()
			if err != nil {
				b.Error(err)
				return
			}
			if err := rw.RUnlock(g); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b)
}

// BenchmarkLockParallel: writers on every core contend and sleep on the
// futex.
func BenchmarkLockParallel(b *testing.B) {
	rw := benchLock(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g, err := rw.Lock()
			if err != nil {
				b.Error(err)
				return
			}
			if err := rw.Unlock(g); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b)
	if st := rw.Stats(); st.Forced != 0 {
		b.Fatalf("forced %d times under contention", st.Forced)
	}
}

func BenchmarkSyncRWMutexLock(b *testing.B) {
	var mu sync.RWMutex
	for b.Loop() {
		mu.Lock()
		mu.Unlock() //nolint:staticcheck // measuring the empty critical section
	}
	reportRate(b)
}

func BenchmarkSyncRWMutexRLock(b *testing.B) {
	var mu sync.RWMutex
	for b.Loop() {
		mu.RLock()
		mu.RUnlock() //nolint:staticcheck // measuring the empty critical section
	}
	reportRate(b)
}

func BenchmarkFutexWakeNoWaiter(b *testing.B) {
	var word uint32
	for b.Loop() {
		if _, err := FutexWake(&word, 1); err != nil {
			b.Fatal(err)
		}
	}
}

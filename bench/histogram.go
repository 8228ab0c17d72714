package bench

import (
	"math/bits"
	"time"
)

// histSub is the number of sub-buckets per power of two: 16 gives a
// relative error under 1/16 (6%) on any percentile, which is far below the
// run-to-run noise of a shared machine, in 1 KiB of counters that merge by
// addition (across goroutines and across reader processes).
const (
	histSubBits = 4
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// Histogram counts latencies in nanoseconds in log-linear buckets. The zero
// value is empty and ready. It is not safe for concurrent use: each client
// keeps its own and they are merged afterwards.
type Histogram struct {
	Counts [histBuckets]uint64 `json:"-"`
	N      uint64              `json:"n"`
	Max    int64               `json:"max_ns"`
}

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v in [2^e, 2^(e+1)), e >= histSubBits
	m := (v >> (e - histSubBits)) & (histSub - 1)
	return (e-histSubBits+1)*histSub + int(m)
}

// histLow is the smallest value in bucket i; histIndex(histLow(i)) == i.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub + histSubBits - 1
	m := uint64(i % histSub)
	return (1 << e) | m<<(e-histSubBits)
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.Counts[histIndex(uint64(d))]++
	h.N++
	if int64(d) > h.Max {
		h.Max = int64(d)
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.Counts {
		h.Counts[i] += c
	}
	h.N += o.N
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the latency at quantile q (0..1) in nanoseconds: the
// middle of the bucket holding it, never more than the largest recorded
// value. 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(q*float64(h.N) + 0.5)
	rank = min(max(rank, 1), h.N)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			lo, hi := histLow(i), histLow(i+1)
			return min(int64(lo+(hi-lo)/2), h.Max)
		}
	}
	return h.Max
}

// sparse is the histogram as index→count pairs, for sending across a pipe.
func (h *Histogram) sparse() map[int]uint64 {
	out := make(map[int]uint64)
	for i, c := range h.Counts {
		if c != 0 {
			out[i] = c
		}
	}
	return out
}

func histFromSparse(m map[int]uint64, maxNs int64) *Histogram {
	h := &Histogram{Max: maxNs}
	for i, c := range m {
		if i >= 0 && i < histBuckets {
			h.Counts[i] += c
			h.N += c
		}
	}
	return h
}

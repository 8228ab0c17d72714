package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistIndexRoundTrip(t *testing.T) {
	for i := 0; i < histBuckets-histSub; i++ {
		if got := histIndex(histLow(i)); got != i {
			t.Fatalf("histIndex(histLow(%d)=%d) = %d", i, histLow(i), got)
		}
		if i > 0 && histLow(i) <= histLow(i-1) {
			t.Fatalf("bucket bounds not increasing at %d", i)
		}
	}
}

// TestHistogramQuantiles compares the histogram's percentiles with the exact
// ones of the same samples: within the bucket precision (1/16).
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var xs []int64
	for range 100_000 {
		v := int64(rng.ExpFloat64() * 2000) // a long tail, like latencies
		xs = append(xs, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(xs)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := xs[int(q*float64(len(xs)))-1]
		got := h.Quantile(q)
		if diff := float64(got-exact) / float64(exact); diff > 1.0/16 || diff < -1.0/16 {
			t.Errorf("q%.3f = %d, exact %d (%.1f%% off)", q, got, exact, 100*diff)
		}
	}
	if h.Max != xs[len(xs)-1] || h.N != uint64(len(xs)) {
		t.Errorf("max %d n %d, want %d %d", h.Max, h.N, xs[len(xs)-1], len(xs))
	}
	var empty Histogram
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

func TestHistogramMergeAndSparse(t *testing.T) {
	var a, b Histogram
	for i := range 1000 {
		a.Record(time.Duration(i))
		b.Record(time.Duration(i * 1000))
	}
	a.Merge(&b)
	c := histFromSparse(a.sparse(), a.Max)
	if c.N != 2000 || c.Max != a.Max || c.Quantile(0.75) != a.Quantile(0.75) {
		t.Fatalf("sparse round trip: n %d max %d q75 %d, want %d %d %d", c.N, c.Max, c.Quantile(0.75), a.N, a.Max, a.Quantile(0.75))
	}
	if q := a.Quantile(0.25); q > 1000 {
		t.Errorf("q25 of the merge = %d, want within the first histogram's range", q)
	}
}

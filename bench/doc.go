// Package bench is shmreg's benchmark harness: the workloads (lookups,
// writes, propagation), the systems they run against (the region, an
// in-process map, bbolt, a shmreg center, Redis, etcd), the runner that
// measures them the same way every time, and the records, tables and charts
// that report them. cmd/shmreg's "bench" subcommand is a thin shell over it.
//
// Method (docs/BENCHMARKS.md says it at length): every system is loaded
// with the same Dataset and looked up in the same random order; each
// measurement is a warm-up followed by a fixed duration, repeated Reps
// times, and the median repetition is reported. Latency is sampled (one
// operation in every K is timed) so that reading the clock does not
// dominate a lookup that costs tens of nanoseconds.
package bench

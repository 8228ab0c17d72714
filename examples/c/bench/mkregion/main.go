// Command mkregion writes a region for the C reader benchmark
// (examples/c/bench): N entries with the keys and values of
// shm/bench_test.go, key svc/service-%04d/instance-%06d (i%10000, i) and a
// 200-byte value whose byte j is byte(i+j), committed in batches of 4096.
//
//	mkregion -n 100000 /dev/shm/some-dir/bench
//
// It prints one line on stdout: the path, the entries and the data file's
// size and layout version as the writer left them.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"

	"github.com/shmreg/shmreg/shm"
)

func benchKey(i int) []byte {
	return []byte(fmt.Sprintf("svc/service-%04d/instance-%06d", i%10000, i))
}

func benchValue(i int) []byte {
	v := make([]byte, 200)
	for j := range v {
		v[j] = byte(i + j)
	}
	return v
}

func main() {
	n := flag.Int("n", 100000, "entries")
	size := flag.Int64("size", 0, "data file size in bytes (default: 512 bytes an entry, at least 16 MiB, as in shm/bench_test.go)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: mkregion [-n ENTRIES] [-size BYTES] PATH\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	if *size == 0 {
		*size = max(int64(*n)*512, 16<<20)
	}
	w, err := shm.OpenWriter(path, shm.Options{Size: *size})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkregion:", err)
		os.Exit(1)
	}
	var b shm.Batch
	for i := 0; i < *n; i++ {
		b.Put(benchKey(i), benchValue(i))
		if b.Len() == 4096 || i == *n-1 {
			if err := w.Commit(&b); err != nil {
				fmt.Fprintln(os.Stderr, "mkregion:", err)
				os.Exit(1)
			}
			b.Reset()
		}
	}
	if err := w.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "mkregion:", err)
		os.Exit(1)
	}
	// The header's version (offset 8) and file_size (offset 16), as written.
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkregion:", err)
		os.Exit(1)
	}
	defer f.Close()
	var h [24]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		fmt.Fprintln(os.Stderr, "mkregion:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: %d entries, %d bytes, layout version %d\n", path, *n,
		binary.LittleEndian.Uint64(h[16:]), binary.LittleEndian.Uint32(h[8:]))
}

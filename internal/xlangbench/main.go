// Command xlangbench writes regions for the Java reader's benchmark and
// reader-slot tests (clients/java); it sits beside internal/xlang rather
// than in it so that each can grow modes without the other.
//
//	go run ./internal/xlangbench keys PATH -n N -out FILE  N random keys, then exit; FILE gets the keys, one a line
//	go run ./internal/xlangbench paced PATH [-rate R] [-for D]
//
// keys: N keys shaped like instance keys (svc/<service>/<id>, 20-40
// bytes) with 64-160-byte values, in random order, committed in batches of
// 1,000.
//
// paced: overwrites paced/000 .. paced/063 with internal/xlang's
// self-checking values at R writes a second (default 3,000), then writes
// paced/done = the count. Slow enough that a reader stuck in a read section
// makes the writer reclaim (reap a dead reader's slot, force a live one's
// after the read lease) before the region fills and is rebuilt, which is
// what a test of the reader slots needs; churn writes so fast that the
// region is rebuilt first.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand"
	"os"
	"strconv"
	"time"

	"github.com/shmreg/shmreg/shm"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: xlangbench keys|paced PATH [flags]")
		os.Exit(2)
	}
	mode, path := os.Args[1], os.Args[2]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	n := fs.Int("n", 100000, "keys: how many keys")
	out := fs.String("out", "", "keys: file to write the keys to, one a line")
	seed := fs.Int64("seed", 1, "keys: random seed")
	rate := fs.Int("rate", 3000, "paced: writes a second")
	dur := fs.Duration("for", 5*time.Second, "paced: how long to write")
	fs.Parse(os.Args[3:])
	var err error
	switch mode {
	case "keys":
		err = keys(path, *n, *out, *seed)
	case "paced":
		err = paced(path, *rate, *dur)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlangbench:", err)
		os.Exit(1)
	}
}

func keys(path string, n int, out string, seed int64) error {
	rnd := rand.New(rand.NewSource(seed))
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	word := func(min, max int) string {
		b := make([]byte, min+rnd.Intn(max-min+1))
		for i := range b {
			b[i] = letters[rnd.Intn(len(letters))]
		}
		return string(b)
	}
	seen := make(map[string]bool, n)
	list := make([]string, 0, n)
	for len(list) < n {
		k := "svc/" + word(4, 10) + "/" + word(10, 22)
		if !seen[k] {
			seen[k] = true
			list = append(list, k)
		}
	}
	// Room for the keys, values, nodes and index, with slack.
	w, err := shm.OpenWriter(path, shm.Options{Size: int64(n)*512 + 64<<20})
	if err != nil {
		return err
	}
	defer w.Close()
	var b shm.Batch
	for i, k := range list {
		v := make([]byte, 64+rnd.Intn(97))
		rnd.Read(v)
		b.Put([]byte(k), v)
		if (i+1)%1000 == 0 || i == len(list)-1 {
			if err := w.Commit(&b); err != nil {
				return err
			}
			b.Reset()
		}
	}
	if out == "" {
		return nil
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	for _, k := range list {
		bw.WriteString(k)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func paced(path string, rate int, d time.Duration) error {
	w, err := shm.OpenWriter(path, shm.Options{Size: 4 << 20})
	if err != nil {
		return err
	}
	defer w.Close()
	start := time.Now()
	var n uint64
	for time.Since(start) < d {
		k := fmt.Sprintf("paced/%03d", n%64)
		if err := w.Put([]byte(k), selfChecking(k, n)); err != nil {
			return err
		}
		n++
		// Keep to the rate: sleep when ahead of schedule.
		if ahead := time.Duration(n)*time.Second/time.Duration(rate) - time.Since(start); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
	}
	return w.Put([]byte("paced/done"), []byte(strconv.FormatUint(n, 10)))
}

// selfChecking is internal/xlang's SelfChecking: payload || fnv1a64(payload).
func selfChecking(key string, n uint64) []byte {
	p := []byte(key + ":" + strconv.FormatUint(n, 10) + ":")
	for i := uint64(0); i < n%251; i++ {
		p = append(p, byte(n+i))
	}
	h := fnv.New64a()
	h.Write(p)
	return binary.LittleEndian.AppendUint64(p, h.Sum64())
}

// Command xlang writes regions for the readers in other languages to read,
// so that every reader is tested against bytes the Go writer produced.
//
//	go run ./internal/xlang fixture PATH        a fixed region, then exit
//	go run ./internal/xlang grow PATH [-for D] [-pause D]
//	                                            insert until the region has been rebuilt into new files
//	go run ./internal/xlang churn PATH [-for D] overwrite keys with self-checking values
//	go run ./internal/xlang put PATH [-after D] KEY VALUE
//	                                            one commit to an existing (or new) region, after a pause
//	go run ./internal/xlang bench PATH [-n N]   N keys k/00000000 .. with 64-byte values, for benchmarks
//
// What every reader's dump is compared with is `shmreg ls --format hex`: one
// line per live entry in key order, hex(key), a tab, hex(value), a newline
// (an empty value leaves nothing after the tab).
//
// Self-checking values (grow and churn): payload || fnv1a64(payload) as 8
// little-endian bytes, where payload = key ":" counter ":" filler and the
// filler is counter%251 bytes, byte i being (counter+i)%256. A reader that
// sees a value whose last 8 bytes are not the FNV-1a hash of the rest, or
// whose payload does not start with its own key and ":", read a torn value.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: xlang fixture|grow|churn|put|bench PATH [-hugetlbfs DIR] [-for DURATION] [-after DURATION] [-n N] [KEY VALUE]")
		os.Exit(2)
	}
	mode, path := os.Args[1], os.Args[2]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	dur := fs.Duration("for", 5*time.Second, "how long grow and churn run")
	after := fs.Duration("after", 0, "how long put waits (with the writer open) before its commit")
	n := fs.Int("n", 100000, "how many keys bench writes")
	pause := fs.Duration("pause", 0, "how long grow sleeps after each commit (0: only briefly every 4096 keys)")
	hugetlbfs := fs.String("hugetlbfs", "", "fixture: put the data file on this hugetlbfs mount (shm.Options.HugeTLBDir); fail rather than fall back")
	fs.Parse(os.Args[3:])
	var err error
	switch mode {
	case "fixture":
		err = fixture(path, *hugetlbfs)
	case "grow":
		err = grow(path, *dur, *pause)
	case "churn":
		err = churn(path, *dur)
	case "put":
		if fs.NArg() != 2 {
			err = fmt.Errorf("put needs KEY VALUE after its flags")
			break
		}
		err = put(path, *after, fs.Arg(0), fs.Arg(1))
	case "bench":
		err = bench(path, *n)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlang:", err)
		os.Exit(1)
	}
}

// SelfChecking returns the self-checking value of key at counter n.
func SelfChecking(key string, n uint64) []byte {
	p := []byte(key + ":" + strconv.FormatUint(n, 10) + ":")
	for i := uint64(0); i < n%251; i++ {
		p = append(p, byte(n+i))
	}
	h := fnv.New64a()
	h.Write(p)
	return binary.LittleEndian.AppendUint64(p, h.Sum64())
}

func fixture(path, hugetlbfs string) error {
	w, err := shm.OpenWriter(path, shm.Options{Size: 8 << 20, HugeTLBDir: hugetlbfs})
	if err != nil {
		return err
	}
	defer w.Close()
	if why := w.Stat().HugeTLBFallback; why != "" {
		return fmt.Errorf("not on hugetlbfs: %s", why)
	}
	var b shm.Batch
	put := func(k string, v []byte) { b.Put([]byte(k), v) }
	// Shared prefixes, in and out of order.
	for _, k := range []string{"a", "ab", "abc", "abd", "abcd", "b", "ba", "cfg/app/timeout", "cfg/app/retries", "cfg/db/dsn"} {
		put(k, []byte("value of "+k))
	}
	// Binary values, an empty value, a key with bytes above 0x7f.
	put("bin/zeros", make([]byte, 64))
	put("bin/all", func() []byte {
		v := make([]byte, 256)
		for i := range v {
			v[i] = byte(i)
		}
		return v
	}())
	put("empty", []byte{})
	put("utf8/\u00e9t\u00e9", []byte("\u00e9"))
	put("hi/\xff\xfe", []byte{0xff, 0x00, 0xfe})
	// A 1 MiB value.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	put("big/1MiB", big)
	// Instances of two services, as agents store them.
	for i, addr := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		v, err := registry.EncodeInstance(registry.Instance{
			Service: "orders", ID: fmt.Sprintf("orders-%d", i+1), Address: addr, Port: 8080 + i,
			Weight: 100 - 10*i, Metadata: map[string]string{"zone": fmt.Sprintf("z%d", i%2), "version": "2.1"},
			Health: registry.HealthPassing, TTL: 15 * time.Second,
		})
		if err != nil {
			return err
		}
		put(registry.InstanceKey("orders", fmt.Sprintf("orders-%d", i+1)), v)
	}
	v, err := registry.EncodeInstance(registry.Instance{Service: "users", ID: "u1", Address: "10.0.1.1", Port: 9000, Weight: 1})
	if err != nil {
		return err
	}
	put(registry.InstanceKey("users", "u1"), v)
	// Keys to delete and to overwrite, in a later commit.
	for i := 0; i < 50; i++ {
		put(fmt.Sprintf("tmp/%03d", i), []byte(strconv.Itoa(i)))
	}
	if err := w.Commit(&b); err != nil {
		return err
	}
	b.Reset()
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("tmp/%03d", i)
		switch i % 3 {
		case 0:
			b.Delete([]byte(k))
		case 1:
			b.Put([]byte(k), []byte("overwritten "+strconv.Itoa(i)))
		}
	}
	b.Put([]byte("ab"), []byte("second value of ab"))
	b.Delete([]byte("abd"))
	return w.Commit(&b)
}

// grow starts a small region and inserts grow/NNNNNNNN keys until the time
// is up, so that the region is rebuilt into new (larger) files several
// times while readers read; it ends by writing grow/done = the count. A
// pause after each commit of 64 keys bounds the count, for readers that
// check every value they read and could not keep up otherwise.
func grow(path string, d, pause time.Duration) error {
	w, err := shm.OpenWriter(path, shm.Options{Size: 256 << 10})
	if err != nil {
		return err
	}
	defer w.Close()
	end := time.Now().Add(d)
	var n uint64
	var b shm.Batch
	for time.Now().Before(end) {
		b.Reset()
		for i := 0; i < 64; i++ {
			k := fmt.Sprintf("grow/%08d", n)
			b.Put([]byte(k), SelfChecking(k, n))
			n++
		}
		if err := w.Commit(&b); err != nil {
			return err
		}
		if pause > 0 {
			time.Sleep(pause)
		} else if n%4096 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return w.Put([]byte("grow/done"), []byte(strconv.FormatUint(n, 10)))
}

// churn overwrites churn/000 .. churn/063 round robin with self-checking
// values until the time is up, then writes churn/done = the count.
func churn(path string, d time.Duration) error {
	w, err := shm.OpenWriter(path, shm.Options{Size: 4 << 20})
	if err != nil {
		return err
	}
	defer w.Close()
	end := time.Now().Add(d)
	var n uint64
	for time.Now().Before(end) {
		k := fmt.Sprintf("churn/%03d", n%64)
		if err := w.Put([]byte(k), SelfChecking(k, n)); err != nil {
			return err
		}
		n++
	}
	return w.Put([]byte("churn/done"), []byte(strconv.FormatUint(n, 10)))
}

// put opens the region as its writer, waits, then commits one key: a
// reader's wait for a change can start before the commit comes.
func put(path string, after time.Duration, key, value string) error {
	w, err := shm.OpenWriter(path, shm.Options{Size: 8 << 20})
	if err != nil {
		return err
	}
	defer w.Close()
	time.Sleep(after)
	return w.Put([]byte(key), []byte(value))
}

// BenchValue is the 64-byte value bench stores under k/%08d: the key, a
// colon, then filler up to 64 bytes, so a reader can check what it read.
func BenchValue(key string) []byte {
	v := make([]byte, 64)
	n := copy(v, key+":")
	for i := n; i < len(v); i++ {
		v[i] = 'a' + byte(i%26)
	}
	return v
}

// bench writes n keys k/00000000 .. k/%08d with 64-byte values, in commits
// of 4096, into a region large enough to hold them without a rebuild.
func bench(path string, n int) error {
	if n < 1 {
		return fmt.Errorf("-n %d: need at least one key", n)
	}
	size := int64(n)*512 + 16<<20
	w, err := shm.OpenWriter(path, shm.Options{Size: size})
	if err != nil {
		return err
	}
	defer w.Close()
	var b shm.Batch
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k/%08d", i)
		b.Put([]byte(k), BenchValue(k))
		if b.Len() == 4096 || i == n-1 {
			if err := w.Commit(&b); err != nil {
				return err
			}
			b.Reset()
		}
	}
	return nil
}

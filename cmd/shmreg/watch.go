package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/shmreg/shmreg/shm"
)

func runWatch(args []string) error {
	fs := newFlags("watch", "PREFIX", "Print the entries under PREFIX, then every change to them as the agent commits it\n(+ added, ~ changed, - deleted). Sleeps on the region's change futex: no polling, no socket.")
	region := regionFlag(fs)
	forDur := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	format := formatFlag(fs)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return argsError(fs, `need exactly one PREFIX ("" for everything)`)
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if *forDur < 0 {
		return usageErrorf("--for %s: must not be negative", *forDur)
	}
	r, err := openRegion(*region)
	if err != nil {
		return err
	}
	defer r.Close()
	ctx, stop := signalContext(*forDur)
	defer stop()
	out := textChanges(os.Stdout)
	if *format == "json" {
		out = jsonChanges(os.Stdout)
	}
	err = watch(ctx, r, fs.Arg(0), out)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// changeFunc prints one line of watch: op is present (listed at the
// start), add, change or delete (value nil).
type changeFunc func(op string, at time.Time, key string, value []byte)

// textChanges prints "= key<TAB>value" for the listing, then "TIME + key<TAB>value",
// "TIME ~ key<TAB>value" and "TIME - key".
func textChanges(w io.Writer) changeFunc {
	sym := map[string]string{"add": "+", "change": "~", "delete": "-"}
	return func(op string, at time.Time, key string, value []byte) {
		switch op {
		case "present":
			fmt.Fprintf(w, "= %s\t%s\n", key, formatValue(key, value))
		case "delete":
			fmt.Fprintf(w, "%s - %s\n", at.Format("15:04:05.000"), key)
		default:
			fmt.Fprintf(w, "%s %s %s\t%s\n", at.Format("15:04:05.000"), sym[op], key, formatValue(key, value))
		}
	}
}

// jsonChanges prints one JSON object a line (see format.go).
func jsonChanges(w io.Writer) changeFunc {
	lines := newJSONLines(w)
	return func(op string, at time.Time, key string, value []byte) { lines.change(op, at, key, value) }
}

// watch prints the entries under prefix and then, after each commit, the
// entries that changed, found by diffing a fresh scan against the last.
func watch(ctx context.Context, r *shm.Reader, prefix string, out changeFunc) error {
	seq := r.Seq() // taken before the scan, so no commit after it is missed
	prev, err := scanMap(r, prefix)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, k := range sortedKeys(prev) {
		out("present", now, k, prev[k])
	}
	for {
		if seq, err = r.Wait(ctx, seq); err != nil {
			return err
		}
		cur, err := scanMap(r, prefix)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, k := range sortedKeys(cur) {
			old, had := prev[k]
			switch {
			case !had:
				out("add", now, k, cur[k])
			case string(old) != string(cur[k]):
				out("change", now, k, cur[k])
			}
		}
		for _, k := range sortedKeys(prev) {
			if _, ok := cur[k]; !ok {
				out("delete", now, k, nil)
			}
		}
		prev = cur
	}
}

// scanMap copies the entries under prefix, a chunk per read (see
// scanChunks). A commit between two chunks is not missed: its sequence
// number is past the one watch waits from, so the next round sees it.
func scanMap(r *shm.Reader, prefix string) (map[string][]byte, error) {
	m := make(map[string][]byte)
	err := scanChunks(r, []byte(prefix), listChunk(), func(chunk []entry) error {
		for _, e := range chunk {
			m[string(e.key)] = e.value
		}
		return nil
	})
	return m, err
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

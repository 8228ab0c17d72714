package main

import (
	"bufio"
	"os"
)

func runLs(args []string) error {
	fs := newFlags("ls", "[PREFIX]", "List the entries under PREFIX (all by default), read straight from the region.")
	region := regionFlag(fs)
	keysOnly := fs.Bool("keys", false, "print keys only")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return argsError(fs, "at most one PREFIX")
	}
	r, err := openRegion(*region)
	if err != nil {
		return err
	}
	defer r.Close()
	// Printed a chunk at a time, each after the read that copied it (see
	// scanChunks): a reader of the output slower than the read lease
	// (ls | less) must not get the listing evicted.
	w := bufio.NewWriter(os.Stdout)
	return scanChunks(r, []byte(fs.Arg(0)), listChunk(), func(chunk []entry) error {
		for _, e := range chunk {
			if *keysOnly {
				w.Write(e.key)
				w.WriteByte('\n')
			} else {
				printEntry(w, string(e.key), e.value)
			}
		}
		return w.Flush() // a failed write (a closed pipe) stops the scan
	})
}

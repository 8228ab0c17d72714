package main

import (
	"bufio"
	"errors"
	"os"
)

func runLs(args []string) error {
	fs := newFlags("ls", "[PREFIX]", "List the entries under PREFIX (all by default), read straight from the region.")
	region := regionFlag(fs)
	keysOnly := fs.Bool("keys", false, "print keys only")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return errors.New("at most one PREFIX")
	}
	r, err := openRegion(*region)
	if err != nil {
		return err
	}
	defer r.Close()
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	return r.Scan([]byte(fs.Arg(0)), func(k, v []byte) bool {
		if *keysOnly {
			w.Write(k)
			w.WriteByte('\n')
		} else {
			printEntry(w, string(k), v)
		}
		return true
	})
}

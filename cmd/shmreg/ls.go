package main

import (
	"bufio"
	"encoding/hex"
	"os"
)

func runLs(args []string) error {
	fs := newFlags("ls", "[PREFIX]", "List the entries under PREFIX (all by default), read straight from the region.")
	region := regionFlag(fs)
	keysOnly := fs.Bool("keys", false, "print keys only")
	format := formatFlag(fs)
	fs.Lookup("format").Usage += "; ls also takes hex (hex key, a tab, hex value: byte-exact, what every language's reader prints to be compared)"
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return argsError(fs, "at most one PREFIX")
	}
	if *format != "hex" {
		if err := checkFormat(*format); err != nil {
			return err
		}
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
	lines := newJSONLines(w)
	return scanChunks(r, []byte(fs.Arg(0)), listChunk(), func(chunk []entry) error {
		for _, e := range chunk {
			if *format == "hex" {
				w.WriteString(hex.EncodeToString(e.key))
				w.WriteByte('\t')
				if !*keysOnly {
					w.WriteString(hex.EncodeToString(e.value))
				}
				w.WriteByte('\n')
			} else if *format == "json" {
				v := e.value
				if *keysOnly {
					v = nil
				}
				je := newEntryJSON(string(e.key), v, *keysOnly)
				if err := lines.enc.Encode(je); err != nil {
					return err
				}
			} else if *keysOnly {
				w.Write(e.key)
				w.WriteByte('\n')
			} else {
				printEntry(w, string(e.key), e.value)
			}
		}
		return w.Flush() // a failed write (a closed pipe) stops the scan
	})
}

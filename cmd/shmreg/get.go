package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/shmreg/shmreg/shm"
)

func runGet(args []string) error {
	fs := newFlags("get", "KEY", "Print one entry's value, read straight from the region.")
	region := regionFlag(fs)
	format := formatFlag(fs)
	raw := fs.Bool("raw", false, "write the value's bytes as they are, with no newline (for a file or a pipe)")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return argsError(fs, "need exactly one KEY")
	}
	if err := checkFormat(*format); err != nil {
		return err
	}
	if *raw && *format != "text" {
		return usageErrorf("--raw and --format %s: choose one", *format)
	}
	r, err := openRegion(*region)
	if err != nil {
		return err
	}
	defer r.Close()
	key := fs.Arg(0)
	// A copy, printed after the read: a View printing from inside the read
	// would be evicted by a consumer slower than the read lease.
	v, err := r.Get([]byte(key))
	if errors.Is(err, shm.ErrNotFound) {
		return &hintError{msg: fmt.Sprintf("no key %q in region %s", key, r.Path()), err: err}
	}
	if err != nil {
		return err
	}
	switch {
	case *raw:
		_, err = os.Stdout.Write(v)
	case *format == "json":
		err = newJSONLines(os.Stdout).entry(key, v)
	default:
		_, err = fmt.Fprintln(os.Stdout, formatValue(key, v))
	}
	return err
}

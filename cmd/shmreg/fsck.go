package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/shmreg/shmreg/shm"
)

func runFsck(args []string) error {
	fs := newFlags("fsck", "", "Check every structure of the region (read-only). Exits 1 if it finds a problem.")
	region := regionFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON for machines")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	rep, err := shm.Fsck(*region, shm.Options{})
	if err != nil {
		return regionError(*region, err)
	}
	if *asJSON {
		if rep.Problems == nil {
			rep.Problems = []string{}
		}
		if err := printJSON(os.Stdout, rep); err != nil {
			return err
		}
	} else {
		fmt.Printf("%s: generation %d, %d entries, %d nodes, %d index slots\n", rep.Path, rep.Generation, rep.Entries, rep.Nodes, rep.IndexSlots)
		for _, p := range rep.Problems {
			fmt.Println("problem:", p)
		}
		if len(rep.Problems) == 0 {
			fmt.Println("ok")
		}
	}
	if len(rep.Problems) > 0 {
		return errors.New(problemsFound(len(rep.Problems)))
	}
	return nil
}

// problemsFound is fsck's closing error message for n > 0 problems.
func problemsFound(n int) string {
	if n == 1 {
		return "1 problem found"
	}
	return fmt.Sprintf("%d problems found", n)
}

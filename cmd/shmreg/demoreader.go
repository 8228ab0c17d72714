package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shmreg/shmreg/registry"
)

// runDemoReader is the reader process of 'shmreg demo': a separate process
// that opens the region read-only and looks a service up, with no socket.
func runDemoReader(args []string) error {
	fs := newFlags("demo-reader", "", "(used by 'shmreg demo') look a service up in the region from a separate process.")
	region := regionFlag(fs)
	service := fs.String("service", "web", "service to look up")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	start := time.Now()
	r, err := openRegion(*region)
	if err != nil {
		return err
	}
	defer r.Close()
	opened := time.Since(start)
	fmt.Printf("  reader process pid %d opened the region in %s and found %s:\n", os.Getpid(), round(opened), *service)
	var found []entry // copied, then printed after the read (see scanChunks)
	err = scanChunks(r, []byte(registry.InstanceKey(*service, "")), listChunk(), func(chunk []entry) error {
		found = append(found, chunk...)
		return nil
	})
	if err != nil {
		return err
	}
	var first []byte
	n := 0
	for _, e := range found {
		in, err := registry.DecodeInstance(e.value)
		if err != nil {
			continue
		}
		if first == nil {
			first = e.key
		}
		n++
		fmt.Printf("    %-8s %s:%d  weight %d  %s\n", in.ID, in.Address, in.Port, in.Weight, in.Health)
	}
	if n == 0 {
		return errors.New("no instance found")
	}
	sess, err := r.Session()
	if err != nil {
		return err
	}
	defer sess.Close()
	const lookups = 200000
	start = time.Now()
	for range lookups {
		if err := sess.View(first, func([]byte) error { return nil }); err != nil {
			return err
		}
	}
	fmt.Printf("  %d lookups of %s from this process: %s each\n", lookups, first, round(time.Since(start)/lookups))
	return nil
}

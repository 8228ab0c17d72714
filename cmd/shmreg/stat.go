package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"
	"text/tabwriter"

	"github.com/shmreg/shmreg/shm"
)

func runStat(args []string) error {
	fs := newFlags("stat", "", "Describe the region: size, entries, place (center and revision), readers, lock counters.")
	region := regionFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON for machines")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	r, err := openRegion(*region)
	if err != nil {
		return err
	}
	defer r.Close()
	st, err := r.Stat()
	if err != nil {
		return err
	}
	running := processRunning(st.WriterPid)
	pages, perr := r.Pages()
	if *asJSON {
		return printJSON(os.Stdout, struct {
			shm.Stat
			WriterRunning bool       `json:"writer_running"` // a process with writer_pid exists
			Pages         *shm.Pages `json:"pages,omitempty"`
		}{st, running, pagesOrNil(pages, perr)})
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("path", st.Path)
	row("layout version", st.LayoutVersion)
	row("created", st.Created.Format("2006-01-02 15:04:05"))
	row("entries", st.Entries)
	row("generation", st.Generation)
	row("file bytes", st.FileBytes)
	row("used bytes", st.UsedBytes)
	row("free bytes", st.FreeBytes)
	row("live bytes", st.LiveBytes)
	row("garbage bytes", st.GarbageBytes)
	row("index slots", st.IndexSlots)
	if perr != nil {
		row("page size", "unknown: "+perr.Error())
	} else {
		row("page size", pages)
	}
	row("compactions", st.Compactions)
	row("place", fmt.Sprintf("center %q revision %d", st.PlaceCenter, st.PlaceRevision))
	if running || st.WriterPid == 0 {
		row("writer pid", st.WriterPid)
	} else {
		row("writer pid", fmt.Sprintf("%d (no longer running)", st.WriterPid))
	}
	row("readers", fmt.Sprintf("%d live of %d slots (forced %d, reaped %d)", st.ReadersLive, st.ReaderSlots, st.SlotsForced, st.SlotsReaped))
	row("lock", fmt.Sprintf("forced %d, recovered %d", st.LockForced, st.LockRecovered))
	if st.Committing {
		row("state", "a commit is under way (or its writer died mid-commit)")
	}
	return tw.Flush()
}

func pagesOrNil(p shm.Pages, err error) *shm.Pages {
	if err != nil {
		return nil
	}
	return &p
}

// processRunning reports whether a process with pid exists (signal 0: EPERM
// means it exists under another user). The pid of a writer that exited may
// have been reused by now, so "running" can be wrong; "not running" cannot.
func processRunning(pid uint64) bool {
	if pid == 0 || pid > math.MaxInt32 {
		return false
	}
	err := syscall.Kill(int(pid), 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

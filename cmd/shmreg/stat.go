package main

import (
	"fmt"
	"os"
	"text/tabwriter"
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
	if *asJSON {
		return printJSON(os.Stdout, st)
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
	row("compactions", st.Compactions)
	row("place", fmt.Sprintf("center %q revision %d", st.PlaceCenter, st.PlaceRevision))
	row("writer pid", st.WriterPid)
	row("readers", fmt.Sprintf("%d live of %d slots (forced %d, reaped %d)", st.ReadersLive, st.ReaderSlots, st.SlotsForced, st.SlotsReaped))
	row("lock", fmt.Sprintf("forced %d, recovered %d", st.LockForced, st.LockRecovered))
	if st.Committing {
		row("state", "a commit is under way (or its writer died mid-commit)")
	}
	return tw.Flush()
}

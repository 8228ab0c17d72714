package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// normalizePrefixes returns the prefixes sorted and without duplicates.
func normalizePrefixes(ps []string) []string {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

// underAny reports whether key is under one of prefixes.
func underAny(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// subscriptionState is what the agent remembers beside its region, in
// <region>.agent.json, about what the region holds:
//
//   - Prefixes is the set of prefixes whose entries the region held
//     completely at the revision recorded in the region's place. It is
//     written after the commit that made it true, so it never claims more
//     than the region holds. Resuming from the saved revision is allowed only
//     if the agent subscribes to exactly this set; otherwise it takes a full
//     snapshot and resyncs by diff.
//   - Dynamic lists the prefixes added through the control socket. It is
//     written before they are subscribed, so that a crash in between leaves
//     a set that differs from Prefixes and forces the full resync.
//
// The file lives in the region's directory (tmpfs): it has the region's
// lifetime.
type subscriptionState struct {
	Prefixes []string `json:"prefixes"`
	Dynamic  []string `json:"dynamic,omitempty"`
}

func statePath(regionPath string) string { return regionPath + ".agent.json" }

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (subscriptionState, error) {
	var st subscriptionState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("agent: read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		// A damaged file only costs a full resync.
		return subscriptionState{}, nil
	}
	st.Prefixes = normalizePrefixes(st.Prefixes)
	st.Dynamic = normalizePrefixes(st.Dynamic)
	return st, nil
}

// saveState replaces the state file atomically (write, fsync, rename).
func saveState(path string, st subscriptionState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("agent: write %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("agent: write %s: %w", path, err)
	}
	return nil
}

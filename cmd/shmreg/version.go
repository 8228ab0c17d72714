package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
)

func runVersion(args []string) error {
	fs := newFlags("version", "", "Print shmreg's module version and the commit it was built from (also 'shmreg --version').")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Errorf("no build information in this binary")
	}
	_, err := fmt.Fprintln(os.Stdout, versionLine(info))
	return err
}

// versionLine is "shmreg VERSION (commit REV[, modified], TIME; GOVERSION)".
// VERSION is the module's: a tag or pseudo-version when built with 'go
// install module@version', "(devel)" when built in a checkout. The commit
// comes from the VCS stamp 'go build' puts in a binary built in a git
// checkout ("unknown" without one, e.g. -buildvcs=false); "modified" means
// the checkout had uncommitted changes.
func versionLine(info *debug.BuildInfo) string {
	set := map[string]string{}
	for _, s := range info.Settings {
		set[s.Key] = s.Value
	}
	rev := set["vcs.revision"]
	if rev == "" {
		rev = "unknown"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "shmreg %s (commit %s", info.Main.Version, rev)
	if set["vcs.modified"] == "true" {
		b.WriteString(", modified")
	}
	if t := set["vcs.time"]; t != "" {
		b.WriteString(", " + t)
	}
	fmt.Fprintf(&b, "; %s)", info.GoVersion)
	return b.String()
}

// Command shmreg is the one binary of the shmreg service registry: centers,
// agents, the region tools, the demo and the benchmark harness.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// command is one subcommand: its one-line summary and its entry point. Each
// subcommand parses its own flags from args and returns an error to print.
// A command with an empty summary is internal (run by another command as a
// child process): runnable, but not listed.
type command struct {
	summary string
	run     func(args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"center":      {"run a registry center (one of the mirrored pair, or of a cluster)", runCenter},
		"cluster":     {"show a center cluster's members (cluster status)", runCluster},
		"register":    {"register a service instance and heartbeat it until interrupted", runRegister},
		"put":         {"write a key/value to the centers", runPut},
		"del":         {"delete a key from the centers", runDel},
		"agent":       {"run the host agent: follow a center, write the region", runAgent},
		"get":         {"print one entry from the region", runGet},
		"ls":          {"list the region's entries under a prefix", runLs},
		"watch":       {"print changes under a prefix as they are committed", runWatch},
		"stat":        {"describe the region", runStat},
		"fsck":        {"check the region's structures", runFsck},
		"demo":        {"run centers, an agent and a reader on loopback, and show them work", runDemo},
		"demo-reader": {"", runDemoReader}, // the reader process of the demo
		"bench":       {"measure lookups, writes and propagation beside the alternatives", runBench},
		"version":     {"print the version and commit shmreg was built from", runVersion},
	}
}

// usage lists the commands that have a summary.
func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: shmreg <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, name := range sortedNames(cmds) {
		if cmds[name].summary != "" {
			fmt.Fprintf(w, "  %-10s %s\n", name, cmds[name].summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'shmreg <command> --help' for a command's flags.")
}

func main() {
	os.Exit(run(commands(), os.Args[1:], os.Stderr))
}

// run dispatches args to a command and returns the exit status: 0 on
// success or help asked for, 1 when the command failed, 2 for a call
// shmreg cannot run as given (no command, an unknown one, or a command
// line its command refused with a usageError).
func run(cmds map[string]command, args []string, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr, cmds)
		return 2
	}
	switch {
	case args[0] == "help" && len(args) == 2:
		args = []string{args[1], "--help"} // an unknown command is refused below
	case args[0] == "help" && len(args) > 2:
		fmt.Fprintf(stderr, "shmreg help: want one command, got %q\n", args[1:])
		return 2
	case args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help":
		usage(stderr, cmds)
		return 0
	case args[0] == "-version" || args[0] == "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "shmreg: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := cmd.run(args[1:]); err != nil {
		fmt.Fprintf(stderr, "shmreg %s: %v\n", args[0], err)
		if u := (*usageError)(nil); errors.As(err, &u) {
			return 2
		}
		return 1
	}
	return 0
}

// Command shmreg is the one binary of the shmreg service registry: centers,
// agents, the region tools, the demo and the benchmark harness.
package main

import (
	"fmt"
	"os"
)

// command is one subcommand: its one-line summary and its entry point. Each
// subcommand parses its own flags from args and returns an error to print.
type command struct {
	summary string
	run     func(args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"center":      {"run a registry center (one of the mirrored pair)", runCenter},
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
		"demo-reader": {"(internal) the reader process of the demo", runDemoReader},
		"bench":       {"measure lookups, writes and propagation beside the alternatives", runBench},
	}
}

func usage(cmds map[string]command) {
	fmt.Fprintln(os.Stderr, "usage: shmreg <command> [flags]")
	fmt.Fprintln(os.Stderr, "\ncommands:")
	for _, name := range sortedNames(cmds) {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", name, cmds[name].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'shmreg <command> --help' for a command's flags.")
}

func main() {
	cmds := commands()
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(cmds)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "shmreg: unknown command %q\n\n", os.Args[1])
		usage(cmds)
		os.Exit(2)
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "shmreg %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

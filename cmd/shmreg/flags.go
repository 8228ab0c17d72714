package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// newFlags returns a flag set whose --help prints the usage line, the
// command's summary and its flags, the same way for every subcommand.
func newFlags(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\n%s\n\nflags:\n", usageLine(name, args), summary)
		fs.PrintDefaults()
	}
	return fs
}

// usageLine is a command's "usage: shmreg NAME [flags] ARGS" line, with no
// trailing space for a command that takes no arguments.
func usageLine(name, args string) string {
	return strings.TrimSpace("usage: shmreg " + name + " [flags] " + args)
}

// parse parses the flags of a command that takes no arguments, and refuses
// any argument left (see noArgs). --help is not an error (it printed the
// usage), so the command returns nil and shmreg exits 0.
func parse(fs *flag.FlagSet, args []string) (help bool, err error) {
	if help, err = parseFlags(fs, args); help || err != nil {
		return help, err
	}
	return false, noArgs(fs)
}

// parseFlags parses the flags of a command, which then checks its
// arguments itself (argsError). A flag the command does not define, or a
// value that does not parse, is a usage error, said once: the flag
// package's own line is dropped, since run prints the error after the
// usage.
func parseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err = fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return true, nil
	case err != nil:
		fs.Usage()
		return false, &usageError{msg: err.Error()}
	}
	return false, nil
}

// noArgs refuses the arguments left after the flags of a command that
// takes none. The flag package stops at the first word that is not a
// flag, and everything after it lands here, flags included: ignoring
// "extra" in 'stat --json extra --region R' would ignore --region R too.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() == 0 {
		return nil
	}
	return argsError(fs, fmt.Sprintf("unexpected arguments %q", fs.Args()))
}

// argsError prints the usage and returns the usage error msg, for a
// command given arguments it does not take. If a flag is among them, it
// says that flags go first.
func argsError(fs *flag.FlagSet, msg string) error {
	fs.Usage()
	for _, a := range fs.Args() {
		if strings.HasPrefix(a, "-") && a != "-" {
			return usageErrorf("%s (flags go before the arguments)", msg)
		}
	}
	return usageErrorf("%s", msg)
}

// checkAddr checks a host:port flag value the way the address will be
// used: it must have a port, a number in 1..65535 or a service name (0
// too if zeroOK: a listener's "any free port"). The host is not looked
// up: a name that does not resolve yet may resolve when it is dialed.
func checkAddr(addr string, zeroOK bool) error {
	_, port, err := net.SplitHostPort(addr)
	var ae *net.AddrError
	switch {
	case errors.As(err, &ae):
		return errors.New(ae.Err)
	case err != nil:
		return err
	case port == "":
		return errors.New("missing port in address")
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		if _, err := net.LookupPort("tcp", port); err != nil {
			return fmt.Errorf("port %q is neither a number nor a known service", port)
		}
		return nil
	}
	if n < 0 || n > 65535 || n == 0 && !zeroOK {
		return fmt.Errorf("port %d is not in 1..65535", n)
	}
	return nil
}

// parseLogLevel parses a --log-level value.
func parseLogLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return level, usageErrorf("--log-level %s: want debug, info, warn or error", s)
	}
	return level, nil
}

// usageError is a command line that cannot be run as given (conflicting
// flags, a value out of range, a stray argument): shmreg exits 2 for it,
// and 1 for a command that ran and failed.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// signalContext is the context of a long-running command: done on SIGINT or
// SIGTERM, or after limit if it is positive. The stop function releases
// the signal handler and the timer.
func signalContext(limit time.Duration) (context.Context, context.CancelFunc) {
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if limit <= 0 {
		return ctx, stopSignals
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	return ctx, func() { cancel(); stopSignals() }
}

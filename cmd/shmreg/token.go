package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// The token that writers present to the centers is a secret, and a
// command's arguments are not: every local user reads them in ps
// (/proc/PID/cmdline). So each command that holds a token (center, agent,
// put, del, register) takes it from a file, named by --token-file or, when
// the command line names no token at all, by $SHMREG_TOKEN_FILE (which is
// how the systemd units in deploy/ hand it over). --token remains for
// tests and one-off use.

// tokenFileEnv names the token file when the command line gives neither
// --token nor --token-file.
const tokenFileEnv = "SHMREG_TOKEN_FILE"

// tokenFlags are the --token and --token-file flags of one command.
type tokenFlags struct {
	fs    *flag.FlagSet // to tell a flag given empty from one not given
	token *string
	file  *string
}

// addTokenFlags adds --token and --token-file to fs; what says what the
// token is for, in the help text.
func addTokenFlags(fs *flag.FlagSet, what string) tokenFlags {
	return tokenFlags{
		fs:    fs,
		token: fs.String("token", "", tokenHelp(what)),
		file:  fs.String("token-file", "", tokenFileHelp),
	}
}

// tokenHelp is --token's help text: it steers to the file.
func tokenHelp(what string) string {
	return what + "; visible to every local user in ps: prefer --token-file"
}

const tokenFileHelp = "file holding the token, read once at start (default $" + tokenFileEnv + ")"

// resolve returns the command's token ("" for none) and, if it was read
// from a file readable by other users, a warning to show (see
// readTokenFile). The command line wins (--token, or the file --token-file
// names; either given empty means no token); if it names no token at all,
// the file env names (the value of $SHMREG_TOKEN_FILE). Both flags at once
// is a usage error.
func (f tokenFlags) resolve(env string) (token, warning string, err error) {
	given, err := f.given()
	switch {
	case err != nil:
		return "", "", err
	case given["token"]:
		return *f.token, "", nil
	case given["token-file"] && *f.file == "":
		return "", "", nil // --token-file "": no token, whatever the environment says
	case given["token-file"]:
		return readTokenFile(*f.file)
	case env != "":
		return readTokenFile(env)
	}
	return "", "", nil
}

// given returns the names of the flags given on the command line, or a
// usage error if they include both --token and --token-file.
func (f tokenFlags) given() (map[string]bool, error) {
	given := setFlags(f.fs)
	if given["token"] && given["token-file"] {
		return nil, usageErrorf("--token and --token-file are mutually exclusive: give one")
	}
	return given, nil
}

// readTokenFile returns the token held in the file at path: its content
// with surrounding white space trimmed. A file that holds nothing else is
// an error, not "no token": read as no token it would silently switch
// authentication off (a center), or make every write fail later with a
// less helpful message (a client).
//
// A file readable by group or others is accepted with a warning, not
// refused: a token shared with the group of the service that reads it
// (0640, root:shmreg) is a legitimate setup, and even a world-readable
// file exposes the token no more than --token does, which is still
// accepted. Refusing would turn a permission slip into a center that does
// not come back after a restart.
func readTokenFile(path string) (token, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("token file: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", "", fmt.Errorf("token file: %w", err)
	}
	if token = strings.TrimSpace(string(b)); token == "" {
		return "", "", fmt.Errorf("token file %s holds no token (it is empty or white space)", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		warning = fmt.Sprintf("token file %s is readable by group or others (mode %04o): chmod 0600, or 0640 if a group must read it", path, perm)
	}
	return token, warning, nil
}

// setFlags returns the names of the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// defaultRegion is the region name every subcommand uses unless told
// otherwise; a bare name resolves under $SHMREG_DIR or /dev/shm/shmreg.
const defaultRegion = "default"

// newFlags returns a flag set whose --help prints the usage line, the
// command's summary and its flags, the same way for every subcommand.
func newFlags(name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: shmreg %s [flags] %s\n\n%s\n\nflags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; --help is not an error (it printed the usage).
func parse(fs *flag.FlagSet, args []string) (help bool, err error) {
	err = fs.Parse(args)
	if err == flag.ErrHelp {
		return true, nil
	}
	return false, err
}

// regionFlag adds --region.
func regionFlag(fs *flag.FlagSet) *string {
	return fs.String("region", defaultRegion, "region name or path (a bare name is under $SHMREG_DIR or "+shm.DefaultDir+")")
}

// openRegion opens a region for reading, with a hint when there is none.
func openRegion(name string) (*shm.Reader, error) {
	r, err := shm.Open(name, shm.Options{})
	if err != nil {
		if os.IsNotExist(err) || strings.Contains(err.Error(), shm.ErrNoRegion.Error()) {
			return nil, fmt.Errorf("%w (is an agent running? see 'shmreg agent --help')", err)
		}
		return nil, err
	}
	return r, nil
}

// formatValue renders a value for people: instances (keys under svc/) as
// JSON, other values as text, or base64 if they are not UTF-8.
func formatValue(key string, v []byte) string {
	if strings.HasPrefix(key, registry.InstancePrefix) {
		if in, err := registry.DecodeInstance(v); err == nil {
			b, err := json.Marshal(instanceJSON(in))
			if err == nil {
				return string(b)
			}
		}
	}
	if utf8.Valid(v) {
		return string(v)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(v)
}

// instanceView is an instance as the CLI prints it: lower-case names, the
// TTL in milliseconds.
type instanceView struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Port     int               `json:"port"`
	Weight   int               `json:"weight"`
	Health   registry.Health   `json:"health"`
	TTLMs    int64             `json:"ttl_ms"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

func instanceJSON(in registry.Instance) instanceView {
	return instanceView{Service: in.Service, ID: in.ID, Address: in.Address, Port: in.Port, Weight: in.Weight,
		Health: in.Health, TTLMs: in.TTL.Milliseconds(), Metadata: in.Metadata}
}

// printEntry prints "key<TAB>value".
func printEntry(w io.Writer, key string, v []byte) {
	fmt.Fprintf(w, "%s\t%s\n", key, formatValue(key, v))
}

// printJSON prints v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

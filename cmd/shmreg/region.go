package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"unicode/utf8"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// defaultRegion is the region name every subcommand uses unless told
// otherwise; a bare name resolves under $SHMREG_DIR or /dev/shm/shmreg.
const defaultRegion = "default"

// regionFlag adds --region.
func regionFlag(fs *flag.FlagSet) *string {
	return fs.String("region", defaultRegion, "region name or path (a bare name is under $SHMREG_DIR or "+shm.DefaultDir+")")
}

// openRegion opens a region for reading, with a hint when there is none.
func openRegion(name string) (*shm.Reader, error) {
	r, err := shm.Open(name, shm.Options{})
	if err != nil {
		return nil, regionError(name, err)
	}
	return r, nil
}

// regionError says where the region was looked for, and what usually
// creates it, when it does not exist; other errors pass unchanged.
func regionError(name string, err error) error {
	if !errors.Is(err, shm.ErrNoRegion) && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if ie := (*shm.IncompleteError)(nil); errors.As(err, &ie) {
		return err // it says which file is missing
	}
	return &hintError{
		msg: fmt.Sprintf("no region at %s (is an agent running? see 'shmreg agent --help')", shm.Options{}.Resolve(name)),
		err: err,
	}
}

// hintError replaces an error's message with one for people, keeping the
// error itself for errors.Is.
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }

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

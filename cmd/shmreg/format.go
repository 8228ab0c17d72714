package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shmreg/shmreg/registry"
)

// The region commands print entries two ways. The text form (the default)
// is for people: "key<TAB>value", a value that is not UTF-8 shown as
// "base64:...", an instance as JSON; a text value that happens to read
// "base64:..." looks the same as a binary one. --format json is for
// scripts, and nothing in it is ambiguous: one JSON object a line,
//
//	{"key":"cfg/a","value":"text"}
//	{"key":"cfg/b","value":"//4=","encoding":"base64"}
//
// "value" is the value itself when it is UTF-8, else its base64 with
// "encoding":"base64"; an instance (a key under svc/) also carries
// "instance", its decoded fields. watch adds "op" (present: listed at the
// start; add, change, delete) and "time" (RFC 3339, UTC); a delete has no
// value. A key that is not UTF-8 (keys are, unless a region was written
// by hand) is base64 with "key_encoding":"base64".

// formatFlag adds --format.
func formatFlag(fs *flag.FlagSet) *string {
	return fs.String("format", "text", "output format: text (for people) or json (one JSON object a line, values exact: text, or base64 with \"encoding\":\"base64\")")
}

// checkFormat refuses a --format value other than text and json.
func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return usageErrorf("--format %s: want text or json", format)
	}
	return nil
}

// entryJSON is one line of --format json.
type entryJSON struct {
	Op          string        `json:"op,omitempty"`
	Time        string        `json:"time,omitempty"`
	Key         string        `json:"key"`
	KeyEncoding string        `json:"key_encoding,omitempty"`
	Value       *string       `json:"value,omitempty"`
	Encoding    string        `json:"encoding,omitempty"`
	Instance    *instanceView `json:"instance,omitempty"`
}

// newEntryJSON renders key and, unless deleted, its value.
func newEntryJSON(key string, value []byte, deleted bool) entryJSON {
	e := entryJSON{Key: key}
	if !utf8.ValidString(key) {
		e.Key, e.KeyEncoding = base64.StdEncoding.EncodeToString([]byte(key)), "base64"
	}
	if deleted {
		return e
	}
	v := string(value)
	if !utf8.Valid(value) {
		v, e.Encoding = base64.StdEncoding.EncodeToString(value), "base64"
	}
	e.Value = &v
	if strings.HasPrefix(key, registry.InstancePrefix) {
		if in, err := registry.DecodeInstance(value); err == nil {
			view := instanceJSON(in)
			e.Instance = &view
		}
	}
	return e
}

// jsonLines writes entries one a line; HTML characters are left as they
// are (the output is not for a web page).
type jsonLines struct{ enc *json.Encoder }

func newJSONLines(w io.Writer) jsonLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return jsonLines{enc: enc}
}

func (j jsonLines) entry(key string, value []byte) error {
	return j.enc.Encode(newEntryJSON(key, value, false))
}

// change writes a watch line: op is present, add, change or delete.
func (j jsonLines) change(op string, at time.Time, key string, value []byte) error {
	e := newEntryJSON(key, value, op == "delete")
	e.Op, e.Time = op, at.UTC().Format(time.RFC3339Nano)
	return j.enc.Encode(e)
}

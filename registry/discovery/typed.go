package discovery

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// StaleError is returned (wrapping ErrStale) when a value lacks fields its
// destination struct declares.
type StaleError struct {
	Key     string
	Missing []string // msgpack names of the fields the entry lacks
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("discovery: %s is stale: written without %s", e.Key, strings.Join(e.Missing, ", "))
}

// Unwrap makes errors.Is(err, ErrStale) true.
func (e *StaleError) Unwrap() error { return ErrStale }

// GetInto decodes key's msgpack value into v, which must be a non-nil
// pointer (usually to a struct).
//
// If the value is a msgpack map lacking a field that v's struct declares
// (see below), it was written by an older version of its producer: v holds
// the decoded value (missing fields at their zero values) and GetInto
// returns a *StaleError (errors.Is(err, ErrStale)). It also asks the agent,
// in the background, to refresh that one key from a center (see Refresh;
// at most once per Options.StaleRefreshInterval for a key); read again
// later, or use GetFreshInto to wait for it.
//
// A field counts as declared unless it is tagged "-" or omitempty (a
// current producer may omit an empty one); embedded and ",inline" structs
// contribute their fields; nested structs are not checked. Before decoding,
// the value is checked to be well-formed msgpack nesting at most 64 levels,
// with no extension type other than the timestamp: the msgpack library
// decodes recursively and trusts unknown extensions' contents, so such
// values could exhaust the stack or memory.
func (c *Catalog) GetInto(key string, v any) error {
	return c.getInto(key, v, true)
}

// GetFreshInto is GetInto that, for a stale entry, waits for the agent to
// refresh the key (bounded by ctx and Options.RefreshTimeout) and decodes
// the fresh entry. If the center itself holds the old schema (the producer
// is still old), it returns the decoded value with a *StaleError again. If
// the refresh fails, v holds the stale value and the error wraps both
// ErrStale and the refresh error (ErrRefresh, ErrNoAgent or ctx's).
func (c *Catalog) GetFreshInto(ctx context.Context, key string, v any) error {
	err := c.getInto(key, v, false)
	if !errors.Is(err, ErrStale) {
		return err
	}
	if rerr := c.Refresh(ctx, key); rerr != nil {
		return errors.Join(err, rerr)
	}
	reflect.ValueOf(v).Elem().SetZero()
	return c.getInto(key, v, false)
}

func (c *Catalog) getInto(key string, v any, refresh bool) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("discovery: GetInto(%s): destination must be a non-nil pointer, not %T", key, v)
	}
	if c.shut.Load() {
		return ErrClosed
	}
	b, err := c.r.Get([]byte(key))
	if err != nil {
		return fmt.Errorf("discovery: %s: %w", key, err)
	}
	missing, err := c.fieldsOf(rv.Type().Elem()).missingFields(b)
	if err != nil {
		return fmt.Errorf("discovery: decode %s: %w", key, err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("discovery: decode %s: %w", key, err)
	}
	if len(missing) == 0 {
		return nil
	}
	if refresh {
		c.refresher.background(key) // errors are logged
	}
	return &StaleError{Key: key, Missing: missing}
}

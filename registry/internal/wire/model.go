package wire

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Limits enforced on every write, by the SDK before sending and by the
// center on receipt.
const (
	// MaxKeyLen is the maximum key length in bytes.
	MaxKeyLen = 512
	// MaxValueLen is the maximum value length in bytes.
	MaxValueLen = 64 << 10
	// InstancePrefix starts every service-instance key: svc/<service>/<id>.
	InstancePrefix = "svc/"
	// MinTTL and MaxTTL bound an instance's TTL; DefaultTTL is used when an
	// instance gives none.
	MinTTL     = 100 * time.Millisecond
	MaxTTL     = 24 * time.Hour
	DefaultTTL = 10 * time.Second
)

// Health of an instance, as the instance reports it.
type Health string

// Health values.
const (
	HealthPassing  Health = "passing"
	HealthWarning  Health = "warning"
	HealthCritical Health = "critical"
)

// Instance is one registered instance of a service. It is stored under
// InstanceKey(Service, ID) as a msgpack map keyed by the field names in the
// tags below (readers detect an older schema by a missing name), see
// EncodeInstance.
type Instance struct {
	Service  string            `msgpack:"service"`
	ID       string            `msgpack:"id"`
	Address  string            `msgpack:"address"`
	Port     int               `msgpack:"port"`
	Weight   int               `msgpack:"weight"`
	Metadata map[string]string `msgpack:"metadata"`
	Health   Health            `msgpack:"health"`
	// TTL is how long the instance lives without a heartbeat; on the wire and
	// in stored values it is an integer number of nanoseconds. 0 means
	// DefaultTTL.
	TTL time.Duration `msgpack:"ttl"`
}

// Key is the instance's key, svc/<service>/<id>.
func (in Instance) Key() string { return InstanceKey(in.Service, in.ID) }

// Record is one key's current state on a center: a value or a tombstone.
type Record struct {
	Key   string `msgpack:"key"`
	Value []byte `msgpack:"value"`
	// Version orders this update against every other update of the key.
	Version Version `msgpack:"version"`
	// Deleted marks a tombstone: the key was deleted (or expired) at Version.
	Deleted bool `msgpack:"deleted,omitempty"`
	// Rev is the revision the reporting center assigned when it applied this
	// update; meaningful only on that center.
	Rev uint64 `msgpack:"rev"`
	// WID is the id the writer gave this write (the SDK gives one to each),
	// so that a write retried on the other center is known to be the same
	// write (see retry.go). Empty for writes a center makes itself.
	WID string `msgpack:"wid,omitempty"`
}

// IsInstance reports whether the record's key is a service-instance key.
func (r Record) IsInstance() bool { return strings.HasPrefix(r.Key, InstancePrefix) }

// InstanceKey returns svc/<service>/<id>.
func InstanceKey(service, id string) string { return InstancePrefix + service + "/" + id }

// ParseInstanceKey splits svc/<service>/<id>. ok is false for any other key.
func ParseInstanceKey(key string) (service, id string, ok bool) {
	rest, found := strings.CutPrefix(key, InstancePrefix)
	if !found {
		return "", "", false
	}
	service, id, found = strings.Cut(rest, "/")
	if !found || service == "" || id == "" || strings.Contains(id, "/") {
		return "", "", false
	}
	return service, id, true
}

// ValidateKey checks a key a write creates (put, register) against the
// documented rules: 1..MaxKeyLen bytes of valid UTF-8 with no control
// character (below 0x20, or 0x7f; NUL included). A tab or a newline in a
// key would break every "key<TAB>value" line a tool prints, and an escape
// sequence would reach a terminal. Both the SDK, before sending, and the
// center, on receipt, check it.
func ValidateKey(key string) error {
	if err := ValidateStoredKey(key); err != nil {
		return err
	}
	if i := strings.IndexFunc(key, isControl); i >= 0 {
		return fmt.Errorf("%w: key %q contains the control character %U at byte %d", ErrInvalid, key, key[i], i)
	}
	return nil
}

// ValidateStoredKey checks a key that may already exist: the rules before
// control characters were refused (1..MaxKeyLen bytes of valid UTF-8
// without NUL). A key written then can still be deleted, and a peer of an
// older version can still replicate it.
func ValidateStoredKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrTooLarge, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalid)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: key contains a NUL byte", ErrInvalid)
	}
	return nil
}

// isControl reports the characters keys may not hold: C0 controls and DEL.
// (C1 controls, U+0080..U+009F, are two bytes in UTF-8 and break no line.)
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// ValidateValue checks a value's size.
func ValidateValue(v []byte) error {
	if len(v) > MaxValueLen {
		return fmt.Errorf("%w: value of %d bytes exceeds %d", ErrTooLarge, len(v), MaxValueLen)
	}
	return nil
}

// ValidateKV checks a plain key/value write: instance keys are written only
// through Register.
func ValidateKV(key string, value []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if strings.HasPrefix(key, InstancePrefix) {
		return fmt.Errorf("%w: keys under %q are service instances; use Register", ErrInvalid, InstancePrefix)
	}
	return ValidateValue(value)
}

// normalize fills defaults and validates an instance.
func (in Instance) Normalize() (Instance, error) {
	if in.Health == "" {
		in.Health = HealthPassing
	}
	if in.TTL == 0 {
		in.TTL = DefaultTTL
	}
	if in.Weight == 0 {
		in.Weight = 1
	}
	bad := func(format string, a ...any) (Instance, error) {
		return in, fmt.Errorf("%w: instance: "+format, append([]any{ErrInvalid}, a...)...)
	}
	switch {
	case in.Service == "" || in.ID == "":
		return bad("service and id are required")
	case strings.Contains(in.Service, "/") || strings.Contains(in.ID, "/"):
		return bad("service and id may not contain '/'")
	case in.Port < 0 || in.Port > 65535:
		return bad("port %d out of range", in.Port)
	case in.Weight < 0:
		return bad("negative weight")
	case in.TTL < MinTTL || in.TTL > MaxTTL:
		return bad("ttl %v outside [%v, %v]", in.TTL, MinTTL, MaxTTL)
	}
	switch in.Health {
	case HealthPassing, HealthWarning, HealthCritical:
	default:
		return bad("unknown health %q", in.Health)
	}
	if err := ValidateKey(in.Key()); err != nil {
		return in, err
	}
	return in, nil
}

// EncodeInstance validates an instance (filling defaults: health passing,
// weight 1, TTL DefaultTTL) and returns the value stored under its key: a
// msgpack map with the field names of Instance's tags.
func EncodeInstance(in Instance) ([]byte, error) {
	in, err := in.Normalize()
	if err != nil {
		return nil, err
	}
	b, err := msgpack.Marshal(&in)
	if err != nil {
		return nil, fmt.Errorf("%w: encode instance: %v", ErrInvalid, err)
	}
	if err := ValidateValue(b); err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeInstance decodes a value written by EncodeInstance. It fails with
// ErrInvalid if b is not a msgpack map or lacks the service or id field.
func DecodeInstance(b []byte) (Instance, error) {
	if err := CheckMsgpack(b); err != nil {
		return Instance{}, fmt.Errorf("%w: instance value: %v", ErrInvalid, err)
	}
	if c := b[0]; !(c >= 0x80 && c <= 0x8f) && c != 0xde && c != 0xdf {
		return Instance{}, fmt.Errorf("%w: instance value is not a msgpack map", ErrInvalid)
	}
	var in Instance
	if err := msgpack.Unmarshal(b, &in); err != nil {
		return Instance{}, fmt.Errorf("%w: instance value: %v", ErrInvalid, err)
	}
	if in.Service == "" || in.ID == "" {
		return Instance{}, fmt.Errorf("%w: instance value lacks service or id", ErrInvalid)
	}
	return in, nil
}

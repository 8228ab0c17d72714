package registry

import "github.com/shmreg/shmreg/registry/internal/wire"

// The model and the protocol's public names. They live in
// registry/internal/wire, which the SDK (this package) and the centers
// (registry/center, registry/pair) share; these aliases are the names users
// know them by.

// Record is one key's state on a center: a value or a tombstone, with its
// version.
type Record = wire.Record

// Instance is a service instance, the value of a key under svc/.
type Instance = wire.Instance

// Version orders updates to a key across the centers of a pair.
type Version = wire.Version

// Health of an instance, as the instance reports it.
type Health = wire.Health

// Role is what a connection is for; it is declared in the handshake.
type Role = wire.Role

// RemoteError is an error reported by a center in an error frame.
type RemoteError = wire.RemoteError

// Instance health values.
const (
	HealthPassing  = wire.HealthPassing
	HealthWarning  = wire.HealthWarning
	HealthCritical = wire.HealthCritical
)

// Roles.
const (
	RoleInstance = wire.RoleInstance // a service instance registering itself
	RoleAgent    = wire.RoleAgent    // a host agent subscribing to prefixes
	RolePeer     = wire.RolePeer     // the other center of the pair
	RoleAdmin    = wire.RoleAdmin    // an operator tool
)

// Limits enforced on every write, by the SDK before sending and by the
// center on receipt; instance TTL bounds.
const (
	MaxKeyLen      = wire.MaxKeyLen
	MaxValueLen    = wire.MaxValueLen
	InstancePrefix = wire.InstancePrefix
	MinTTL         = wire.MinTTL
	MaxTTL         = wire.MaxTTL
	DefaultTTL     = wire.DefaultTTL
)

// Protocol constants.
const (
	// ProtocolVersion is the version sent in the handshake.
	ProtocolVersion = wire.ProtocolVersion
	// DefaultMaxFrame is the default maximum frame payload, in bytes.
	DefaultMaxFrame = wire.DefaultMaxFrame
)

// Sentinel errors. Errors returned by this package wrap one of these where a
// caller can act on the condition; test with errors.Is.
var (
	ErrNotFound     = wire.ErrNotFound     // the key does not exist (or is deleted) on the center asked
	ErrTooLarge     = wire.ErrTooLarge     // a key, value or frame exceeds its documented limit
	ErrUnauthorized = wire.ErrUnauthorized // the token is missing or wrong, or the role may not do this
	ErrInvalid      = wire.ErrInvalid      // a key, instance or request is malformed
	ErrProtocol     = wire.ErrProtocol     // not a valid frame, or an unsupported protocol version
	ErrClosed       = wire.ErrClosed       // the connection, client or center is closed
	ErrUnavailable  = wire.ErrUnavailable  // no center could be reached, or the one asked cannot serve now
	ErrOverloaded   = wire.ErrOverloaded   // the center shed the request or the connection
)

// InstanceKey returns svc/<service>/<id>.
func InstanceKey(service, id string) string { return wire.InstanceKey(service, id) }

// ParseInstanceKey splits svc/<service>/<id>.
func ParseInstanceKey(key string) (service, id string, ok bool) { return wire.ParseInstanceKey(key) }

// ValidateKey checks a key against the protocol's rules.
func ValidateKey(key string) error { return wire.ValidateKey(key) }

// ValidateValue checks a value's size.
func ValidateValue(v []byte) error { return wire.ValidateValue(v) }

// EncodeInstance encodes an instance as its value (a msgpack map).
func EncodeInstance(in Instance) ([]byte, error) { return wire.EncodeInstance(in) }

// DecodeInstance decodes an instance value.
func DecodeInstance(b []byte) (Instance, error) { return wire.DecodeInstance(b) }

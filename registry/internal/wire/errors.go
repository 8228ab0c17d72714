package wire

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these where a
// caller can act on the condition; test with errors.Is.
var (
	// ErrNotFound: the key does not exist (or is deleted) on the center asked.
	ErrNotFound = errors.New("registry: not found")
	// ErrTooLarge: a key, value or frame exceeds its documented limit.
	ErrTooLarge = errors.New("registry: too large")
	// ErrUnauthorized: the token is missing or wrong, or the role may not do this.
	ErrUnauthorized = errors.New("registry: unauthorized")
	// ErrInvalid: a key, instance or request is malformed.
	ErrInvalid = errors.New("registry: invalid")
	// ErrProtocol: the peer sent bytes that are not a valid frame, or an
	// unsupported protocol version.
	ErrProtocol = errors.New("registry: protocol error")
	// ErrClosed: the connection, client or center is closed.
	ErrClosed = errors.New("registry: closed")
	// ErrUnavailable: no center could be reached, or the center asked cannot
	// serve now (its store fails): try the other center.
	ErrUnavailable = errors.New("registry: no center available")
	// ErrOverloaded: the center shed the request or the connection because a
	// queue was full (for example a subscriber that does not keep up).
	ErrOverloaded = errors.New("registry: overloaded")
)

// Error codes carried in error frames; each maps to one sentinel.
const (
	CodeNotFound     = "not_found"
	CodeTooLarge     = "too_large"
	CodeUnauthorized = "unauthorized"
	CodeInvalid      = "invalid"
	CodeProtocol     = "protocol"
	CodeOverloaded   = "overloaded"
	CodeInternal     = "internal"
	CodeUnavailable  = "unavailable" // retriable on the other center
)

var codeSentinels = map[string]error{
	CodeNotFound:     ErrNotFound,
	CodeTooLarge:     ErrTooLarge,
	CodeUnauthorized: ErrUnauthorized,
	CodeInvalid:      ErrInvalid,
	CodeProtocol:     ErrProtocol,
	CodeOverloaded:   ErrOverloaded,
	CodeUnavailable:  ErrUnavailable,
}

// ErrorCode maps an error to its wire code.
func ErrorCode(err error) string {
	for code, s := range codeSentinels {
		if errors.Is(err, s) {
			return code
		}
	}
	return CodeInternal
}

// RemoteError is an error reported by a center in an error frame.
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("center: %s (%s)", e.Message, e.Code) }

// Unwrap returns the sentinel for the code, so errors.Is(err, ErrNotFound) works.
func (e *RemoteError) Unwrap() error { return codeSentinels[e.Code] }

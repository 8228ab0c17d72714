package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/shmreg/shmreg/registry"
)

// The control protocol (docs/AGENT.md): newline-delimited JSON over a Unix
// socket, one request a line, one response line per request, in order.
//
//	{"op":"status"}                                   -> {"ok":true,"status":{...}}
//	{"op":"subscribe","prefixes":["cfg/x/"]}          -> {"ok":true}   (after the snapshot is applied)
//	{"op":"refresh","key":"K"}                        -> {"ok":true}   (after the commit)
//	{"op":"register","instance":{...},"ttl_ms":N}     -> {"ok":true}
//	{"op":"deregister","service":"S","id":"I"}        -> {"ok":true}
//	anything that fails                               -> {"ok":false,"error":"..."}

// Control operations.
const (
	OpStatus     = "status"
	OpSubscribe  = "subscribe"
	OpRefresh    = "refresh"
	OpRegister   = "register"
	OpDeregister = "deregister"
)

// MaxRequestLen is the longest request line accepted; a longer one ends the
// connection with an error response.
const MaxRequestLen = 1 << 20

// ErrBadRequest wraps every request the decoder refuses.
var ErrBadRequest = errors.New("agent: bad request")

// Request is one control request.
type Request struct {
	Op string `json:"op"`
	// Prefixes for subscribe.
	Prefixes []string `json:"prefixes,omitempty"`
	// Key for refresh.
	Key string `json:"key,omitempty"`
	// Instance for register: registry.Instance as encoding/json writes it
	// (field names match case-insensitively, so "service", "id", "address",
	// "port", "weight", "metadata", "health" work; "ttl" is nanoseconds).
	Instance *registry.Instance `json:"instance,omitempty"`
	// TTLMs for register, in milliseconds, overrides the instance's TTL.
	TTLMs int64 `json:"ttl_ms,omitempty"`
	// Service and ID for deregister.
	Service string `json:"service,omitempty"`
	ID      string `json:"id,omitempty"`
}

// Response is one control response.
type Response struct {
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// maxPrefixes bounds one subscribe request.
const maxPrefixes = 256

// DecodeRequest parses and validates one request line (without its
// newline). Every error wraps ErrBadRequest.
func DecodeRequest(line []byte) (Request, error) {
	var req Request
	if len(line) > MaxRequestLen {
		return req, fmt.Errorf("%w: request of %d bytes exceeds %d", ErrBadRequest, len(line), MaxRequestLen)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Request{}, fmt.Errorf("%w: trailing data after the request", ErrBadRequest)
	}
	bad := func(format string, a ...any) (Request, error) {
		return Request{}, fmt.Errorf("%w: %s: "+format, append([]any{ErrBadRequest, req.Op}, a...)...)
	}
	switch req.Op {
	case OpStatus:
	case OpSubscribe:
		if len(req.Prefixes) == 0 || len(req.Prefixes) > maxPrefixes {
			return bad("need 1..%d prefixes", maxPrefixes)
		}
		for _, p := range req.Prefixes {
			if len(p) > registry.MaxKeyLen {
				return bad("prefix longer than %d bytes", registry.MaxKeyLen)
			}
		}
	case OpRefresh:
		if err := registry.ValidateKey(req.Key); err != nil {
			return bad("%v", err)
		}
	case OpRegister:
		if req.Instance == nil {
			return bad("no instance")
		}
		if req.TTLMs < 0 || req.TTLMs > registry.MaxTTL.Milliseconds() {
			return bad("ttl_ms %d out of range", req.TTLMs)
		}
		in := *req.Instance
		if req.TTLMs > 0 {
			in.TTL = msDuration(req.TTLMs)
		}
		if _, err := registry.EncodeInstance(in); err != nil {
			return bad("%v", err)
		}
	case OpDeregister:
		if req.Service == "" || req.ID == "" {
			return bad("service and id are required")
		}
	case "":
		return Request{}, fmt.Errorf("%w: no op", ErrBadRequest)
	default:
		return Request{}, fmt.Errorf("%w: unknown op %q", ErrBadRequest, req.Op)
	}
	return req, nil
}

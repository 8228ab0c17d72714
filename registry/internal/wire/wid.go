package wire

import (
	"crypto/rand"
	"encoding/hex"
)

// MaxWIDLen bounds a write id (see registry/pair's retry table).
const MaxWIDLen = 64

// NewWID returns a fresh write id.
func NewWID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

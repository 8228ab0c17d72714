package discovery

import (
	"encoding/binary"
	"errors"
)

// maxNesting bounds how deeply arrays and maps may nest in a typed value.
// The msgpack library decodes recursively without a limit, so a hostile or
// corrupt value of a few megabytes of nested array headers would exhaust
// the stack; values are checked with skipValue, which is iterative, first.
const maxNesting = 64

var (
	errMalformed = errors.New("malformed msgpack")
	errExtension = errors.New("msgpack extension type other than the timestamp (-1)")
)

// skipValue returns the position just past the msgpack value starting at
// p[pos], checking that it is complete and nests at most maxNesting deep.
//
// It also refuses extension types other than the timestamp (-1, what
// time.Time encodes to): the msgpack library decodes an unknown
// extension's payload into an interface with lengths it does not check
// (a few bytes asking for a map of a billion entries exhaust memory).
func skipValue(p []byte, pos int) (int, error) {
	var stack [maxNesting]int // items still to read at each open level
	depth := 0
	pending := 1
	for {
		for pending == 0 {
			if depth == 0 {
				return pos, nil
			}
			depth--
			pending = stack[depth]
		}
		if pos >= len(p) {
			return 0, errMalformed
		}
		c := p[pos]
		pos++
		pending--
		lenBytes, skip, items, lenIsItems := 0, 0, 0, 0 // lenIsItems: 0 bytes, 1 array items, 2 map entries
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c <= 0x9f:
			items = int(c & 0x0f)
		case c <= 0xbf:
			skip = int(c & 0x1f)
		case c == 0xc4, c == 0xd9:
			lenBytes = 1
		case c == 0xc5, c == 0xda:
			lenBytes = 2
		case c == 0xc6, c == 0xdb:
			lenBytes = 4
		case c == 0xc7:
			lenBytes, skip = 1, 1
		case c == 0xc8:
			lenBytes, skip = 2, 1
		case c == 0xc9:
			lenBytes, skip = 4, 1
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c >= 0xcc && c <= 0xd3:
			skip = 1 << (c & 0x03)
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
		case c == 0xdc:
			lenBytes, lenIsItems = 2, 1
		case c == 0xdd:
			lenBytes, lenIsItems = 4, 1
		case c == 0xde:
			lenBytes, lenIsItems = 2, 2
		case c == 0xdf:
			lenBytes, lenIsItems = 4, 2
		default: // 0xc1, never used
			return 0, errMalformed
		}
		if lenBytes > 0 {
			if len(p)-pos < lenBytes {
				return 0, errMalformed
			}
			var n uint64
			switch lenBytes {
			case 1:
				n = uint64(p[pos])
			case 2:
				n = uint64(binary.BigEndian.Uint16(p[pos:]))
			case 4:
				n = uint64(binary.BigEndian.Uint32(p[pos:]))
			}
			pos += lenBytes
			// Every item takes at least one byte: a count larger than
			// what is left is malformed (and would overflow int on 32 bits).
			if n > uint64(len(p)) {
				return 0, errMalformed
			}
			switch lenIsItems {
			case 0:
				skip += int(n)
			case 1:
				items = int(n)
			case 2:
				items = 2 * int(n)
			}
		}
		if len(p)-pos < skip {
			return 0, errMalformed
		}
		if (c >= 0xc7 && c <= 0xc9) || (c >= 0xd4 && c <= 0xd8) {
			if int8(p[pos]) != -1 { // the type byte; skip counts it, so it is there
				return 0, errExtension
			}
		}
		pos += skip
		if items > 0 {
			if items > len(p)-pos {
				return 0, errMalformed
			}
			if depth == maxNesting {
				return 0, errMalformed
			}
			stack[depth] = pending
			depth++
			pending = items
		}
	}
}

// mapKeys calls fn with every string key of the msgpack map that is the
// whole of p (str, bin or nil keys, as the msgpack library reads them into
// a string; other keys are skipped). It reports isMap false, and
// calls nothing, for a well-formed value that is not a map. The whole of p
// is checked: a malformed value, trailing bytes or nesting deeper than
// maxNesting fail.
func mapKeys(p []byte, fn func(key []byte)) (isMap bool, err error) {
	end, err := skipValue(p, 0)
	if err != nil {
		return false, err
	}
	if end != len(p) {
		return false, errMalformed
	}
	c := p[0]
	var n, pos int
	switch {
	case c >= 0x80 && c <= 0x8f:
		n, pos = int(c&0x0f), 1
	case c == 0xde:
		n, pos = int(binary.BigEndian.Uint16(p[1:])), 3
	case c == 0xdf:
		n, pos = int(binary.BigEndian.Uint32(p[1:])), 5
	default:
		return false, nil
	}
	// skipValue validated everything below, so only the key's own header
	// needs reading here.
	for range n {
		c := p[pos]
		var klen, hdr int
		// Keys are read as the msgpack library reads them into a string:
		// str or bin, and nil as the empty string.
		switch {
		case c == 0xc0:
			klen, hdr = 0, 1
		case c >= 0xa0 && c <= 0xbf:
			klen, hdr = int(c&0x1f), 1
		case c == 0xd9, c == 0xc4:
			klen, hdr = int(p[pos+1]), 2
		case c == 0xda, c == 0xc5:
			klen, hdr = int(binary.BigEndian.Uint16(p[pos+1:])), 3
		case c == 0xdb, c == 0xc6:
			klen, hdr = int(binary.BigEndian.Uint32(p[pos+1:])), 5
		default:
			hdr = -1
		}
		if hdr >= 0 {
			fn(p[pos+hdr : pos+hdr+klen])
			pos += hdr + klen
		} else if pos, err = skipValue(p, pos); err != nil {
			return true, err
		}
		if pos, err = skipValue(p, pos); err != nil {
			return true, err
		}
	}
	return true, nil
}

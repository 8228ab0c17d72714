package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// A frame on the wire is a 4-byte big-endian payload length N followed by N
// bytes of msgpack: a 3-element array [type, request id, body]. The body is
// one msgpack value whose shape depends on the type (see messages.go and
// docs/PROTOCOL.md). Request id 0 marks a frame that answers no request
// (pushes, fatal errors, keep-alives).
//
// Every frame is validated structurally (CheckMsgpack) before it is decoded,
// so a hostile length prefix inside the msgpack cannot make the decoder
// allocate more than the frame holds, and nesting is bounded.

const (
	// ProtocolVersion is the version sent in the handshake. A center refuses
	// any other version with an error frame.
	ProtocolVersion = 1
	// DefaultMaxFrame is the default maximum frame payload, in bytes.
	DefaultMaxFrame = 4 << 20
	// MinMaxFrame is the smallest allowed MaxFrame: a frame must hold at least
	// one maximal record.
	MinMaxFrame = 128 << 10
	// maxNesting bounds msgpack nesting depth in a frame.
	maxNesting     = 16
	FrameHeaderLen = 4
)

// Frame is one decoded frame. Body aliases the frame's buffer.
type Frame struct {
	Type MsgType
	ID   uint64
	Body []byte
}

// ReadFrame reads one frame's payload. It returns ErrTooLarge (wrapped) if the
// length prefix exceeds max, ErrProtocol for an empty frame, and io errors
// as they come.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	n, err := ReadFrameLen(r, max)
	if err != nil {
		return nil, err
	}
	return ReadFrameBody(r, n)
}

// ReadFrameLen reads a frame's length prefix and checks it against max.
func ReadFrameLen(r io.Reader, max int) (int, error) {
	var hdr [FrameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return 0, fmt.Errorf("%w: empty frame", ErrProtocol)
	}
	if uint64(n) > uint64(max) {
		if looksLikeText(hdr[:]) {
			return 0, &NotProtocolError{Head: hdr}
		}
		return 0, fmt.Errorf("%w: frame of %d bytes exceeds the maximum of %d", ErrTooLarge, n, max)
	}
	return int(n), nil
}

// NotProtocolError is a length prefix that is printable text, as the first
// bytes of an HTTP reply ("HTTP") or of a text protocol are: the other side
// does not speak the shmreg protocol. It wraps ErrProtocol.
type NotProtocolError struct {
	Head [FrameHeaderLen]byte // the bytes read where a length was expected
}

func (e *NotProtocolError) Error() string {
	return fmt.Sprintf("%v: the other side speaks %q..., not the shmreg protocol", ErrProtocol, e.Head[:])
}

func (e *NotProtocolError) Unwrap() error { return ErrProtocol }

// looksLikeText reports whether a length prefix is printable ASCII, as the
// first bytes of an HTTP request or reply ("GET ", "HTTP") or of a text
// protocol are: no shmreg frame is that large.
func looksLikeText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// ReadFrameBody reads the n bytes of a frame's payload.
func ReadFrameBody(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// DecodeFrame parses a frame payload into its type, id and body.
func DecodeFrame(p []byte) (Frame, error) {
	if err := CheckMsgpack(p); err != nil {
		return Frame{}, err
	}
	// Header: fixarray(3), then two unsigned ints.
	if p[0] != 0x93 {
		return Frame{}, fmt.Errorf("%w: frame is not a 3-element array", ErrProtocol)
	}
	d := msgpack.GetDecoder()
	defer msgpack.PutDecoder(d)
	r := bytes.NewReader(p[1:])
	d.Reset(r)
	t, err := d.DecodeUint64()
	if err != nil {
		return Frame{}, fmt.Errorf("%w: frame type: %v", ErrProtocol, err)
	}
	if t == 0 || t >= uint64(MsgTypeEnd) {
		return Frame{}, fmt.Errorf("%w: unknown frame type %d", ErrProtocol, t)
	}
	id, err := d.DecodeUint64()
	if err != nil {
		return Frame{}, fmt.Errorf("%w: request id: %v", ErrProtocol, err)
	}
	body := p[len(p)-r.Len():]
	return Frame{Type: MsgType(t), ID: id, Body: body}, nil
}

// DecodeBody decodes a frame body into v (a pointer to a message struct).
func DecodeBody(body []byte, v any) error {
	if err := msgpack.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: bad body: %v", ErrProtocol, err)
	}
	return nil
}

// EncodeFrame encodes a whole frame (length prefix included). body may be nil.
func EncodeFrame(t MsgType, id uint64, body any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(128)
	buf.Write([]byte{0, 0, 0, 0})
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	if err := enc.EncodeArrayLen(3); err != nil {
		return nil, err
	}
	if err := enc.EncodeUint(uint64(t)); err != nil {
		return nil, err
	}
	if err := enc.EncodeUint(id); err != nil {
		return nil, err
	}
	if err := enc.Encode(body); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	binary.BigEndian.PutUint32(b, uint32(len(b)-FrameHeaderLen))
	return b, nil
}

// CheckMsgpack verifies that p is exactly one well-formed msgpack value whose
// declared lengths fit in p and whose nesting is at most maxNesting. It never
// allocates more than the nesting stack and runs in time linear in len(p).
func CheckMsgpack(p []byte) error {
	bad := func(what string) error { return fmt.Errorf("%w: malformed msgpack: %s", ErrProtocol, what) }
	pos := 0
	var stack [maxNesting]int
	depth := 0
	pending := 1
	for {
		for pending == 0 {
			if depth == 0 {
				if pos != len(p) {
					return bad("trailing bytes")
				}
				return nil
			}
			depth--
			pending = stack[depth]
		}
		if pos >= len(p) {
			return bad("truncated")
		}
		c := p[pos]
		pos++
		pending--
		// lenBytes: size of a big-endian length that follows; skip: fixed
		// payload size; items: number of child values (maps count 2 per entry);
		// data: the length read is a byte count (true) or an item count.
		var lenBytes, skip, items int
		mapMul := 0 // 0: length is bytes, 1: array items, 2: map entries
		switch {
		case c <= 0x7f || c >= 0xe0:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = int(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = int(c & 0x1f)
		default:
			switch c {
			case 0xc0, 0xc2, 0xc3:
			case 0xc1:
				return bad("reserved code 0xc1")
			case 0xc4, 0xd9:
				lenBytes = 1
			case 0xc5, 0xda:
				lenBytes = 2
			case 0xc6, 0xdb:
				lenBytes = 4
			case 0xc7:
				lenBytes, skip = 1, 1
			case 0xc8:
				lenBytes, skip = 2, 1
			case 0xc9:
				lenBytes, skip = 4, 1
			case 0xca:
				skip = 4
			case 0xcb:
				skip = 8
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xce, 0xd2:
				skip = 4
			case 0xcf, 0xd3:
				skip = 8
			case 0xd4:
				skip = 2
			case 0xd5:
				skip = 3
			case 0xd6:
				skip = 5
			case 0xd7:
				skip = 9
			case 0xd8:
				skip = 17
			case 0xdc:
				lenBytes, mapMul = 2, 1
			case 0xdd:
				lenBytes, mapMul = 4, 1
			case 0xde:
				lenBytes, mapMul = 2, 2
			case 0xdf:
				lenBytes, mapMul = 4, 2
			}
		}
		if lenBytes > 0 {
			if len(p)-pos < lenBytes {
				return bad("truncated length")
			}
			var n uint64
			for i := 0; i < lenBytes; i++ {
				n = n<<8 | uint64(p[pos+i])
			}
			pos += lenBytes
			if n > uint64(len(p)) {
				return bad("length exceeds frame")
			}
			if mapMul == 0 {
				skip += int(n)
			} else {
				items = mapMul * int(n)
			}
		}
		if skip > len(p)-pos {
			return bad("value exceeds frame")
		}
		pos += skip
		if items > 0 {
			if items > len(p)-pos {
				return bad("container exceeds frame")
			}
			if depth == maxNesting {
				return bad("nesting too deep")
			}
			stack[depth] = pending
			depth++
			pending = items
		}
	}
}

// HandshakeTimeout bounds the exchange of hello and welcome.
const HandshakeTimeout = 10 * time.Second

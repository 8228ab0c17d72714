package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A push that many subscribers receive (the same changes under the same
// prefixes) differs between them only in its sub_id. SharedPush encodes
// everything else once; each subscriber's frame is then its own few bytes
// of head and tail around the same body:
//
//	head: length (4 bytes) | 0x93 | type (push) | id 0 | map header (n+1 entries)
//	body: the n other entries of the push map, shared
//	tail: "sub_id" | the subscriber's id
//
// A map's entries may come in any order, so this is an ordinary push frame
// to every decoder.
type SharedPush struct {
	Body    []byte // the map's entries but sub_id
	entries int    // how many
	Records int    // records carried, for metrics
}

// pushShared is PushOut without its sub_id.
type pushShared struct {
	Snapshot bool      `msgpack:"snapshot,omitempty"`
	Prefixes []string  `msgpack:"prefixes,omitempty"`
	Records  []*Record `msgpack:"records"`
	Rev      uint64    `msgpack:"rev"`
	More     bool      `msgpack:"more,omitempty"`
	CenterID string    `msgpack:"center_id"`
}

// EncodeSharedPush encodes m but its SubID, once.
func EncodeSharedPush(m *PushOut) (*SharedPush, error) {
	b, err := msgpack.Marshal(&pushShared{Snapshot: m.Snapshot, Prefixes: m.Prefixes, Records: m.Records, Rev: m.Rev, More: m.More, CenterID: m.CenterID})
	if err != nil {
		return nil, err
	}
	if len(b) == 0 || b[0]&0xf0 != 0x80 {
		return nil, fmt.Errorf("registry: a push's body did not encode as a small map (0x%x)", b[0])
	}
	return &SharedPush{Body: b[1:], entries: int(b[0] & 0x0f), Records: len(m.Records)}, nil
}

// Frame returns subID's head and tail around p.Body: head, p.Body and tail
// written one after the other are one push frame.
func (p *SharedPush) Frame(subID uint64) (head, tail []byte) {
	tail = append([]byte{0xa0 | byte(len("sub_id"))}, "sub_id"...) // a fixstr
	tail = appendUint(tail, subID)
	head = make([]byte, 4, 8)
	head = append(head, 0x93, byte(MsgPush), 0x00)
	head = append(head, 0x80|byte(p.entries+1)) // at most 7 entries: a fixmap
	binary.BigEndian.PutUint32(head, uint32(len(head)-4+len(p.Body)+len(tail)))
	return head, tail
}

// appendUint appends v in msgpack's shortest unsigned form.
func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= 0xff:
		return append(b, 0xcc, byte(v))
	case v <= 0xffff:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A push that many subscribers receive (the same changes under the same
// prefixes) differs between them only in its sub_id. SharedPush encodes
// everything else once; each subscriber's frame is then the shared head and
// body followed by its own tail, which never changes:
//
//	head: length (4 bytes) | 0x93 | type (push) | id 0 | map header (n+1 entries)
//	body: the n other entries of the push map
//	tail: "sub_id" | the subscriber's id, always as a uint64 (9 bytes)
//
// The tail has one size for every id, so the length, and the head, are the
// same for every subscriber. A map's entries may come in any order, so this
// is an ordinary push frame to every decoder.
type SharedPush struct {
	Head    []byte
	Body    []byte // the map's entries but sub_id
	Records int    // records carried, for metrics
}

// PushTailLen is the size of every PushTail.
const PushTailLen = 1 + len("sub_id") + 9

// PushTail is a subscriber's own end of every push frame it is sent.
func PushTail(subID uint64) []byte {
	t := make([]byte, 0, PushTailLen)
	t = append(t, 0xa0|byte(len("sub_id"))) // a fixstr
	t = append(t, "sub_id"...)
	return binary.BigEndian.AppendUint64(append(t, 0xcf), subID)
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
	entries := int(b[0] & 0x0f)
	head := make([]byte, 4, 8)
	head = append(head, 0x93, byte(MsgPush), 0x00, 0x80|byte(entries+1)) // at most 7 entries: a fixmap
	binary.BigEndian.PutUint32(head, uint32(len(head)-4+len(b)-1+PushTailLen))
	return &SharedPush{Head: head, Body: b[1:], Records: len(m.Records)}, nil
}

package wire

// MsgType identifies a frame's body. Values are part of the protocol: never
// renumber, only append (docs/PROTOCOL.md lists them).
type MsgType uint8

const (
	MsgHello        MsgType = 1  // client -> center: HelloMsg (first frame)
	MsgWelcome      MsgType = 2  // center -> client: WelcomeMsg
	MsgError        MsgType = 3  // center -> client: ErrorMsg (id 0: fatal, connection closes)
	MsgOK           MsgType = 4  // reply: OKMsg
	MsgPing         MsgType = 5  // either way: no body; answered by MsgPong with the same id
	MsgPong         MsgType = 6  //
	MsgPut          MsgType = 7  // PutMsg -> OKMsg
	MsgDelete       MsgType = 8  // KeyMsg -> OKMsg
	MsgRegister     MsgType = 9  // RegisterMsg -> OKMsg
	MsgHeartbeat    MsgType = 10 // HeartbeatMsg -> HeartbeatAckMsg
	MsgHeartbeatAck MsgType = 11 //
	MsgGet          MsgType = 12 // KeyMsg -> RecordsMsg (one record)
	MsgList         MsgType = 13 // ListMsg -> RecordsMsg
	MsgRecords      MsgType = 14 //
	MsgSubscribe    MsgType = 15 // SubscribeMsg -> OKMsg, then PushMsg frames with id 0
	MsgUnsubscribe  MsgType = 16 // SubIDMsg -> OKMsg
	MsgPush         MsgType = 17 // center -> client: PushMsg
	MsgReplicate    MsgType = 18 // peer: RecordsMsg -> OKMsg
	MsgTouch        MsgType = 19 // peer: TouchMsg, no reply
	MsgDigests      MsgType = 20 // peer: no body -> DigestsMsg
	MsgDigestsReply MsgType = 21 //
	MsgBucket       MsgType = 22 // peer: BucketMsg -> RecordsMsg (More set if truncated)
	MsgAddPrefixes  MsgType = 23 // SubscribeMsg (SubID, Prefixes) -> OKMsg, then a snapshot push for them
	MsgTypeEnd      MsgType = 24
)

// Role is what a connection is for; it is declared in the handshake.
type Role string

// Roles.
const (
	RoleInstance Role = "instance" // a service instance registering itself
	RoleAgent    Role = "agent"    // a host agent subscribing to prefixes
	RolePeer     Role = "peer"     // the other center of the pair
	RoleAdmin    Role = "admin"    // an operator tool
)

func (r Role) Valid() bool {
	switch r {
	case RoleInstance, RoleAgent, RolePeer, RoleAdmin:
		return true
	}
	return false
}

type HelloMsg struct {
	Version  int    `msgpack:"version"`
	Role     Role   `msgpack:"role"`
	Token    string `msgpack:"token,omitempty"`
	CenterID string `msgpack:"center_id,omitempty"` // set by peers
	Name     string `msgpack:"name,omitempty"`      // free-form client name for logs
}

type WelcomeMsg struct {
	Version  int    `msgpack:"version"`
	CenterID string `msgpack:"center_id"`
	MaxFrame int    `msgpack:"max_frame"`
	Rev      uint64 `msgpack:"rev"`
}

type ErrorMsg struct {
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
}

type OKMsg struct {
	Version Version `msgpack:"version"`
	Rev     uint64  `msgpack:"rev"`
	// NotFound, in the answer to a delete: the center held no live record
	// and left a fence tombstone at Version (see docs/PROTOCOL.md); the
	// client reports ErrNotFound and orders its later writes after Version.
	NotFound bool `msgpack:"not_found,omitempty"`
}

// After, in a write, is the highest version (HLC) the client has been
// answered with, by either center: the center moves its clock past it
// before stamping the write (see Center.observeClient).
// WID, in a write, names the write on every attempt (see retry.go).
type PutMsg struct {
	Key   string `msgpack:"key"`
	Value []byte `msgpack:"value"`
	After uint64 `msgpack:"after,omitempty"`
	WID   string `msgpack:"wid,omitempty"`
}

type KeyMsg struct {
	Key   string `msgpack:"key"`
	After uint64 `msgpack:"after,omitempty"` // in a delete
	WID   string `msgpack:"wid,omitempty"`   // in a delete
}

type RegisterMsg struct {
	Instance  Instance `msgpack:"instance"`
	TieToConn bool     `msgpack:"tie_to_conn,omitempty"`
	After     uint64   `msgpack:"after,omitempty"`
	WID       string   `msgpack:"wid,omitempty"`
}

type HeartbeatMsg struct {
	Keys []string `msgpack:"keys"`
}

type HeartbeatAckMsg struct {
	Missing []string `msgpack:"missing,omitempty"` // keys the center does not hold: re-register them
}

type ListMsg struct {
	Prefix string `msgpack:"prefix"`
}

type RecordsMsg struct {
	Records []Record `msgpack:"records"`
	More    bool     `msgpack:"more,omitempty"`
}

type SubscribeMsg struct {
	SubID    uint64   `msgpack:"sub_id"`
	Prefixes []string `msgpack:"prefixes"`
	FromRev  uint64   `msgpack:"from_rev,omitempty"`
}

type SubIDMsg struct {
	SubID uint64 `msgpack:"sub_id"`
}

// PushMsg carries part of a batch. A batch may span several frames (a large
// snapshot); all but the last have More set.
type PushMsg struct {
	SubID    uint64   `msgpack:"sub_id"`
	Snapshot bool     `msgpack:"snapshot,omitempty"`
	Prefixes []string `msgpack:"prefixes,omitempty"` // for a snapshot: what it replaces
	Records  []Record `msgpack:"records"`
	Rev      uint64   `msgpack:"rev"`
	More     bool     `msgpack:"more,omitempty"`
	CenterID string   `msgpack:"center_id"`
}

// PushOut and RecordsOut are the sending side of PushMsg and RecordsMsg:
// the same encoding, from records the center shares instead of copies.
type PushOut struct {
	SubID    uint64    `msgpack:"sub_id"`
	Snapshot bool      `msgpack:"snapshot,omitempty"`
	Prefixes []string  `msgpack:"prefixes,omitempty"`
	Records  []*Record `msgpack:"records"`
	Rev      uint64    `msgpack:"rev"`
	More     bool      `msgpack:"more,omitempty"`
	CenterID string    `msgpack:"center_id"`
}

type RecordsOut struct {
	Records []*Record `msgpack:"records"`
	More    bool      `msgpack:"more,omitempty"`
}

type TouchMsg struct {
	Keys []string `msgpack:"keys"`
}

type DigestsMsg struct {
	Digests []uint64 `msgpack:"digests"`
}

type BucketMsg struct {
	Bucket int    `msgpack:"bucket"`
	After  string `msgpack:"after,omitempty"`
}

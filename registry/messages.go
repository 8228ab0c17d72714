package registry

// msgType identifies a frame's body. Values are part of the protocol: never
// renumber, only append (docs/PROTOCOL.md lists them).
type msgType uint8

const (
	msgHello        msgType = 1  // client -> center: helloMsg (first frame)
	msgWelcome      msgType = 2  // center -> client: welcomeMsg
	msgError        msgType = 3  // center -> client: errorMsg (id 0: fatal, connection closes)
	msgOK           msgType = 4  // reply: okMsg
	msgPing         msgType = 5  // either way: no body; answered by msgPong with the same id
	msgPong         msgType = 6  //
	msgPut          msgType = 7  // putMsg -> okMsg
	msgDelete       msgType = 8  // keyMsg -> okMsg
	msgRegister     msgType = 9  // registerMsg -> okMsg
	msgHeartbeat    msgType = 10 // heartbeatMsg -> heartbeatAckMsg
	msgHeartbeatAck msgType = 11 //
	msgGet          msgType = 12 // keyMsg -> recordsMsg (one record)
	msgList         msgType = 13 // listMsg -> recordsMsg
	msgRecords      msgType = 14 //
	msgSubscribe    msgType = 15 // subscribeMsg -> okMsg, then pushMsg frames with id 0
	msgUnsubscribe  msgType = 16 // subIDMsg -> okMsg
	msgPush         msgType = 17 // center -> client: pushMsg
	msgReplicate    msgType = 18 // peer: recordsMsg -> okMsg
	msgTouch        msgType = 19 // peer: touchMsg, no reply
	msgDigests      msgType = 20 // peer: no body -> digestsMsg
	msgDigestsReply msgType = 21 //
	msgBucket       msgType = 22 // peer: bucketMsg -> recordsMsg (More set if truncated)
	msgAddPrefixes  msgType = 23 // subscribeMsg (SubID, Prefixes) -> okMsg, then a snapshot push for them
	msgTypeEnd      msgType = 24
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

func (r Role) valid() bool {
	switch r {
	case RoleInstance, RoleAgent, RolePeer, RoleAdmin:
		return true
	}
	return false
}

type helloMsg struct {
	Version  int    `msgpack:"version"`
	Role     Role   `msgpack:"role"`
	Token    string `msgpack:"token,omitempty"`
	CenterID string `msgpack:"center_id,omitempty"` // set by peers
	Name     string `msgpack:"name,omitempty"`      // free-form client name for logs
}

type welcomeMsg struct {
	Version  int    `msgpack:"version"`
	CenterID string `msgpack:"center_id"`
	MaxFrame int    `msgpack:"max_frame"`
	Rev      uint64 `msgpack:"rev"`
}

type errorMsg struct {
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
}

type okMsg struct {
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
type putMsg struct {
	Key   string `msgpack:"key"`
	Value []byte `msgpack:"value"`
	After uint64 `msgpack:"after,omitempty"`
	WID   string `msgpack:"wid,omitempty"`
}

type keyMsg struct {
	Key   string `msgpack:"key"`
	After uint64 `msgpack:"after,omitempty"` // in a delete
	WID   string `msgpack:"wid,omitempty"`   // in a delete
}

type registerMsg struct {
	Instance  Instance `msgpack:"instance"`
	TieToConn bool     `msgpack:"tie_to_conn,omitempty"`
	After     uint64   `msgpack:"after,omitempty"`
	WID       string   `msgpack:"wid,omitempty"`
}

type heartbeatMsg struct {
	Keys []string `msgpack:"keys"`
}

type heartbeatAckMsg struct {
	Missing []string `msgpack:"missing,omitempty"` // keys the center does not hold: re-register them
}

type listMsg struct {
	Prefix string `msgpack:"prefix"`
}

type recordsMsg struct {
	Records []Record `msgpack:"records"`
	More    bool     `msgpack:"more,omitempty"`
}

type subscribeMsg struct {
	SubID    uint64   `msgpack:"sub_id"`
	Prefixes []string `msgpack:"prefixes"`
	FromRev  uint64   `msgpack:"from_rev,omitempty"`
}

type subIDMsg struct {
	SubID uint64 `msgpack:"sub_id"`
}

// pushMsg carries part of a batch. A batch may span several frames (a large
// snapshot); all but the last have More set.
type pushMsg struct {
	SubID    uint64   `msgpack:"sub_id"`
	Snapshot bool     `msgpack:"snapshot,omitempty"`
	Prefixes []string `msgpack:"prefixes,omitempty"` // for a snapshot: what it replaces
	Records  []Record `msgpack:"records"`
	Rev      uint64   `msgpack:"rev"`
	More     bool     `msgpack:"more,omitempty"`
	CenterID string   `msgpack:"center_id"`
}

// pushOut and recordsOut are the sending side of pushMsg and recordsMsg:
// the same encoding, from records the center shares instead of copies.
type pushOut struct {
	SubID    uint64    `msgpack:"sub_id"`
	Snapshot bool      `msgpack:"snapshot,omitempty"`
	Prefixes []string  `msgpack:"prefixes,omitempty"`
	Records  []*Record `msgpack:"records"`
	Rev      uint64    `msgpack:"rev"`
	More     bool      `msgpack:"more,omitempty"`
	CenterID string    `msgpack:"center_id"`
}

type recordsOut struct {
	Records []*Record `msgpack:"records"`
	More    bool      `msgpack:"more,omitempty"`
}

type touchMsg struct {
	Keys []string `msgpack:"keys"`
}

type digestsMsg struct {
	Digests []uint64 `msgpack:"digests"`
}

type bucketMsg struct {
	Bucket int    `msgpack:"bucket"`
	After  string `msgpack:"after,omitempty"`
}

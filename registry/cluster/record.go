package cluster

import (
	"github.com/vmihailenco/msgpack/v5"
)

// stored is a record's value in etcd, under Prefix+"records/"+key. What
// etcd already keeps is not repeated: the version and the revision of a
// record are the key's mod revision (global to the cluster, so ordering
// needs no clock), and a delete is an etcd delete (the centers remember it
// as a tombstone in memory; see Backend).
type stored struct {
	Value []byte `msgpack:"v"`
	// Owner is the name of the center that registered an instance: the only
	// center that judges its liveness (its heartbeats arrive there), and
	// whose etcd lease the key is attached to.
	Owner string `msgpack:"o,omitempty"`
	// WID is the client's id of the write (see docs/PROTOCOL.md): a retry
	// on another center finds it and is answered without a second write.
	WID string `msgpack:"w,omitempty"`
	// Seq names the write among the owner's writes in flight, so that the
	// owner can give the change back its connection (an instance tied to
	// its connection) when it comes back through the watch.
	Seq uint64 `msgpack:"s,omitempty"`
}

func encodeStored(s *stored) (string, error) {
	b, err := msgpack.Marshal(s)
	return string(b), err
}

func decodeStored(b []byte) (stored, error) {
	var s stored
	err := msgpack.Unmarshal(b, &s)
	return s, err
}

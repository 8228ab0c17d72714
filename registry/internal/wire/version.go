package wire

import "time"

// Version orders updates to a key across both centers: a hybrid logical clock
// reading, ties broken by the id of the center that made the update. Two
// distinct updates never have equal versions, so last-writer-wins picks the
// same winner everywhere.
type Version struct {
	// HLC packs wall-clock milliseconds since the Unix epoch (high 48 bits)
	// and a logical counter (low 16 bits).
	HLC uint64 `msgpack:"hlc"`
	// Origin is the id of the center that accepted the update.
	Origin string `msgpack:"origin"`
}

// Less reports whether v orders before w.
func (v Version) Less(w Version) bool {
	if v.HLC != w.HLC {
		return v.HLC < w.HLC
	}
	return v.Origin < w.Origin
}

// IsZero reports whether v is the zero version (no update).
func (v Version) IsZero() bool { return v.HLC == 0 && v.Origin == "" }

// Time is the wall-clock part of the version.
func (v Version) Time() time.Time { return time.UnixMilli(int64(v.HLC >> 16)) }

// HLCLogicalBits is the width of the logical counter in Version.HLC.
const HLCLogicalBits = 16

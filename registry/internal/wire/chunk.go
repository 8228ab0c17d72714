package wire

// ChunkRecords splits records into runs of about limit encoded bytes,
// sharing the backing array (nothing is copied); it always returns at
// least one (possibly empty) chunk.
func ChunkRecords(recs []*Record, limit int) [][]*Record {
	var out [][]*Record
	start, size := 0, 0
	for i, r := range recs {
		sz := len(r.Key) + len(r.Value) + len(r.Version.Origin) + 64
		if size+sz > limit && i > start {
			out = append(out, recs[start:i:i])
			start, size = i, 0
		}
		size += sz
	}
	return append(out, recs[start:len(recs):len(recs)])
}

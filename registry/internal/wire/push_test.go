package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// TestSharedPushIsAPushFrame: head + body + tail decodes as the push that
// EncodeFrame would have sent, for ids of every msgpack width.
func TestSharedPushIsAPushFrame(t *testing.T) {
	recs := []*Record{{Key: "svc/a/1", Value: []byte("x"), Version: Version{HLC: 7, Origin: "c-1"}, Rev: 3}, {Key: "cfg/b", Deleted: true, Rev: 4}}
	for _, m := range []PushOut{
		{Records: recs, Rev: 4, CenterID: "c-1"},
		{Snapshot: true, Prefixes: []string{"svc/", "cfg/"}, Records: recs, Rev: 4, More: true, CenterID: "c-1"},
		{Records: nil, Rev: 9, CenterID: "c-2"},
	} {
		sp, err := EncodeSharedPush(&m)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 32, 1<<64 - 1} {
			frame := append(append(append([]byte(nil), sp.Head...), sp.Body...), PushTail(id)...)
			p, err := ReadFrame(bytes.NewReader(frame), DefaultMaxFrame)
			if err != nil {
				t.Fatalf("id %d: %v", id, err)
			}
			f, err := DecodeFrame(p)
			if err != nil {
				t.Fatalf("id %d: %v", id, err)
			}
			var got PushMsg
			if err := DecodeBody(f.Body, &got); err != nil {
				t.Fatalf("id %d: %v", id, err)
			}
			want := m
			want.SubID = id
			wb, _ := EncodeFrame(MsgPush, 0, &want)
			var wantMsg PushMsg
			wp, _ := ReadFrame(bytes.NewReader(wb), DefaultMaxFrame)
			wf, _ := DecodeFrame(wp)
			DecodeBody(wf.Body, &wantMsg)
			if f.Type != MsgPush || f.ID != 0 || !reflect.DeepEqual(got, wantMsg) {
				t.Fatalf("id %d: got %+v (type %d id %d), want %+v", id, got, f.Type, f.ID, wantMsg)
			}
		}
	}
}

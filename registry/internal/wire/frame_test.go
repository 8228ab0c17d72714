package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestFrameRoundTrip(t *testing.T) {
	in := &PutMsg{Key: "cfg/a", Value: []byte{1, 2, 3}}
	b, err := EncodeFrame(MsgPut, 42, in)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ReadFrame(bytes.NewReader(b), DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	f, err := DecodeFrame(p)
	if err != nil {
		t.Fatal(err)
	}
	var out PutMsg
	if err := DecodeBody(f.Body, &out); err != nil {
		t.Fatal(err)
	}
	if f.Type != MsgPut || f.ID != 42 || out.Key != in.Key || !bytes.Equal(out.Value, in.Value) {
		t.Fatalf("round trip: %+v %+v", f, out)
	}
}

func TestReadFrameLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"over the maximum", []byte{0, 0x10, 0, 1}, ErrTooLarge},
		{"empty", []byte{0, 0, 0, 0}, ErrProtocol},
		{"an HTTP reply", []byte("HTTP/1.1 400 Bad Request\r\n"), ErrProtocol},
	} {
		if _, err := ReadFrame(bytes.NewReader(tc.in), 1<<20); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	var text *NotProtocolError
	if _, err := ReadFrame(bytes.NewReader([]byte("-ERR unknown command\r\n")), 1<<20); !errors.As(err, &text) || string(text.Head[:]) != "-ERR" {
		t.Errorf("a text reply: %v, want a NotProtocolError holding %q", err, "-ERR")
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 5, 1}), 1<<20); err == nil {
		t.Error("truncated frame accepted")
	}
}

func TestCheckMsgpack(t *testing.T) {
	valid, _ := msgpack.Marshal(map[string]any{"a": []any{1, "x", nil, true, 1.5, []byte("b"), map[string]int{"c": 3}}})
	deep := bytes.Repeat([]byte{0x91}, maxNesting+1)
	deep = append(deep, 0x01)
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"valid nested", valid, true},
		{"fixint", []byte{0x05}, true},
		{"empty", nil, false},
		{"reserved 0xc1", []byte{0xc1}, false},
		{"array32 claiming 4G elements", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, false},
		{"str8 longer than input", []byte{0xd9, 0x10, 'a'}, false},
		{"trailing", []byte{0x01, 0x02}, false},
		{"map missing a value", []byte{0x81, 0x01}, false},
		{"too deep", deep, false},
	} {
		err := CheckMsgpack(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err=%v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v is not ErrProtocol", tc.name, err)
		}
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame reader and every body
// decoder a center or client uses: none may panic or allocate beyond the
// frame, and whatever CheckMsgpack accepts must decode or fail cleanly.
func FuzzDecodeFrame(f *testing.F) {
	seed := func(t MsgType, body any) {
		b, err := EncodeFrame(t, 1, body)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(MsgHello, &HelloMsg{Version: 1, Role: RoleAgent, Token: "x"})
	seed(MsgPut, &PutMsg{Key: "cfg/a", Value: []byte("v")})
	seed(MsgRegister, &RegisterMsg{Instance: Instance{Service: "s", ID: "i", Metadata: map[string]string{"k": "v"}}})
	seed(MsgPush, &PushMsg{SubID: 1, Records: []Record{{Key: "k", Value: []byte("v"), Version: Version{HLC: 1, Origin: "o"}}}})
	seed(MsgDigestsReply, &DigestsMsg{Digests: []uint64{1, 2, 3}})
	f.Add([]byte{0, 0, 0, 6, 0x93, 0x01, 0x01, 0xdd, 0xff, 0xff})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ReadFrame(bytes.NewReader(data), 1<<16)
		if err != nil {
			return
		}
		fr, err := DecodeFrame(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decodeFrame error %v is not ErrProtocol", err)
			}
			return
		}
		for _, v := range []any{&HelloMsg{}, &WelcomeMsg{}, &ErrorMsg{}, &OKMsg{}, &PutMsg{}, &KeyMsg{},
			&RegisterMsg{}, &HeartbeatMsg{}, &HeartbeatAckMsg{}, &ListMsg{}, &RecordsMsg{}, &SubscribeMsg{},
			&SubIDMsg{}, &PushMsg{}, &TouchMsg{}, &DigestsMsg{}, &BucketMsg{}} {
			_ = DecodeBody(fr.Body, v)
		}
		_, _ = DecodeInstance(fr.Body)
	})
}

package wire

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestInstanceKey(t *testing.T) {
	if k := InstanceKey("web", "a1"); k != "svc/web/a1" {
		t.Fatal(k)
	}
	for _, tc := range []struct {
		key, svc, id string
		ok           bool
	}{
		{"svc/web/a1", "web", "a1", true},
		{"svc/web", "", "", false},
		{"svc//a1", "", "", false},
		{"svc/web/a/b", "", "", false},
		{"cfg/web/a1", "", "", false},
	} {
		svc, id, ok := ParseInstanceKey(tc.key)
		if svc != tc.svc || id != tc.id || ok != tc.ok {
			t.Errorf("%q: %q %q %v", tc.key, svc, id, ok)
		}
	}
}

func TestInstanceEncodingIsAMapWithFieldNames(t *testing.T) {
	in := Instance{Service: "web", ID: "a1", Address: "10.0.0.1", Port: 80, Metadata: map[string]string{"zone": "a"}}
	b, err := EncodeInstance(in)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"service", "id", "address", "port", "weight", "metadata", "health", "ttl"} {
		if _, ok := m[f]; !ok {
			t.Errorf("encoded instance lacks field %q: %v", f, m)
		}
	}
	out, err := DecodeInstance(b)
	if err != nil {
		t.Fatal(err)
	}
	// Defaults are filled in on encode.
	if out.Address != "10.0.0.1" || out.Health != HealthPassing || out.Weight != 1 || out.TTL != DefaultTTL || out.Metadata["zone"] != "a" {
		t.Fatalf("decoded %+v", out)
	}
	if _, err := DecodeInstance([]byte{0x93, 1, 2, 3}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("array accepted: %v", err)
	}
	old, _ := msgpack.Marshal(map[string]any{"addr": "x"})
	if _, err := DecodeInstance(old); !errors.Is(err, ErrInvalid) {
		t.Fatalf("value without service/id accepted: %v", err)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"empty key", ValidateKey(""), ErrInvalid},
		{"long key", ValidateKey(strings.Repeat("k", MaxKeyLen+1)), ErrTooLarge},
		{"max key", ValidateKey(strings.Repeat("k", MaxKeyLen)), nil},
		{"nul", ValidateKey("a\x00b"), ErrInvalid},
		{"bad utf8", ValidateKey("a\xffb"), ErrInvalid},
		{"tab", ValidateKey("cfg/a\tb"), ErrInvalid},
		{"newline", ValidateKey("cfg/a\nb"), ErrInvalid},
		{"escape", ValidateKey("cfg/\x1b[31m"), ErrInvalid},
		{"del", ValidateKey("cfg/a\x7fb"), ErrInvalid},
		{"control in an id", errOf(EncodeInstance(Instance{Service: "s", ID: "a\rb"})), ErrInvalid},
		{"space and unicode", ValidateKey("cfg/a b/é/€"), nil},
		{"C1 range is text", ValidateKey("cfg/\u0085"), nil},
		{"a stored key with a tab", ValidateStoredKey("cfg/a\tb"), nil},
		{"a stored key with a NUL", ValidateStoredKey("cfg/a\x00b"), ErrInvalid},
		{"big value", ValidateValue(make([]byte, MaxValueLen+1)), ErrTooLarge},
		{"max value", ValidateValue(make([]byte, MaxValueLen)), nil},
		{"kv under svc/", ValidateKV("svc/a/b", nil), ErrInvalid},
		{"no service", errOf(EncodeInstance(Instance{ID: "x"})), ErrInvalid},
		{"slash in id", errOf(EncodeInstance(Instance{Service: "s", ID: "a/b"})), ErrInvalid},
		{"port", errOf(EncodeInstance(Instance{Service: "s", ID: "a", Port: 70000})), ErrInvalid},
		{"ttl too small", errOf(EncodeInstance(Instance{Service: "s", ID: "a", TTL: time.Millisecond})), ErrInvalid},
		{"health", errOf(EncodeInstance(Instance{Service: "s", ID: "a", Health: "sick"})), ErrInvalid},
	} {
		if !errors.Is(tc.err, tc.want) || (tc.want == nil) != (tc.err == nil) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func errOf(_ []byte, err error) error { return err }

func TestVersionOrder(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	v1, v2 := Version{HLC: 5, Origin: "a"}, Version{HLC: 5, Origin: "b"}
	if !v1.Less(v2) || v2.Less(v1) || v1.Less(v1) {
		t.Fatal("origin must break HLC ties deterministically")
	}
	if (Version{HLC: 4, Origin: "z"}).Less(Version{HLC: 3, Origin: "a"}) {
		t.Fatal("HLC must dominate origin")
	}
	if got := (Version{HLC: uint64(now.UnixMilli()) << 16}).Time(); !got.Equal(now) {
		t.Fatalf("Time() %v want %v", got, now)
	}
}

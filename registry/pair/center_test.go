package pair

import (
	"errors"
	"testing"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

func TestPutGetListDelete(t *testing.T) {
	c := testCenter(t, Options{Options: center.Options{Insecure: true}, DataDir: t.TempDir()})
	conn := dialT(t, c.Addr().String(), registry.DialOptions{Role: wire.RoleAdmin})
	ctx := tctx(t)
	v1, err := conn.Put(ctx, "cfg/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if v1.Origin != c.ID() || v1.HLC == 0 {
		t.Fatalf("version %+v", v1)
	}
	v2, err := conn.Put(ctx, "cfg/a", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	if !v1.Less(v2) {
		t.Fatalf("second write %+v not after first %+v", v2, v1)
	}
	if _, err := conn.Put(ctx, "cfg/b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	r, err := conn.Get(ctx, "cfg/a")
	if err != nil || string(r.Value) != "2" || r.Version != v2 {
		t.Fatalf("get: %+v %v", r, err)
	}
	list, err := conn.List(ctx, "cfg/")
	if err != nil || keysOf(list) != "cfg/a,cfg/b" {
		t.Fatalf("list: %v %v", keysOf(list), err)
	}
	if _, err := conn.Delete(ctx, "cfg/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Get(ctx, "cfg/a"); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := conn.Delete(ctx, "cfg/a"); !errors.Is(err, wire.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

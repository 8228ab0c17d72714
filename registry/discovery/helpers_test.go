package discovery

import (
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// testRegion creates a region in a temporary directory and returns its
// writer and a catalog over it; both are closed at the end of the test.
func testRegion(t testing.TB, opts Options) (*shm.Writer, *Catalog) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "region")
	w, err := shm.OpenWriter(path, shm.Options{Size: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	c, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return w, c
}

func putInstance(t testing.TB, w *shm.Writer, in registry.Instance) {
	t.Helper()
	b, err := registry.EncodeInstance(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]byte(in.Key()), b); err != nil {
		t.Fatal(err)
	}
}

func deleteKey(t testing.TB, w *shm.Writer, key string) {
	t.Helper()
	if _, err := w.Delete([]byte(key)); err != nil {
		t.Fatal(err)
	}
}

func inst(service, id string, port int) registry.Instance {
	return registry.Instance{Service: service, ID: id, Address: "10.0.0.1", Port: port}
}

func ids(ins []registry.Instance) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.ID
	}
	return out
}

func reflectTypeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

package discovery

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/shmreg/shmreg/registry"
)

func TestInstancesHealthFilter(t *testing.T) {
	for _, tc := range []struct {
		name               string
		warningIsUnhealthy bool
		healthy            []string
	}{
		{"warning serves", false, []string{"a", "b"}},
		{"warning excluded", true, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c := testRegion(t, Options{WarningIsUnhealthy: tc.warningIsUnhealthy})
			a, b, d := inst("orders", "a", 1), inst("orders", "b", 2), inst("orders", "d", 4)
			b.Health, d.Health = registry.HealthWarning, registry.HealthCritical
			b.Weight, b.Metadata = 3, map[string]string{"zone": "eu-1", "load": "0.5"}
			for _, in := range []registry.Instance{a, b, d, inst("orders2", "x", 9), inst("order", "y", 9)} {
				putInstance(t, w, in)
			}
			// Values under the prefix that are not instances are skipped.
			if err := w.Put([]byte("svc/orders/garbage"), []byte("not msgpack")); err != nil {
				t.Fatal(err)
			}
			wrong, _ := registry.EncodeInstance(inst("orders", "other-id", 5))
			if err := w.Put([]byte("svc/orders/mismatch"), wrong); err != nil {
				t.Fatal(err)
			}
			got, err := c.Instances("orders")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tc.healthy) {
				t.Fatalf("Instances = %v, want %v", ids(got), tc.healthy)
			}
			all, err := c.AllInstances("orders")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(all), []string{"a", "b", "d"}) {
				t.Fatalf("AllInstances = %v", ids(all))
			}
			// Every field a caller uses is decoded.
			if got := all[1]; got.Port != 2 || got.Address != "10.0.0.1" || got.Weight != 3 ||
				got.Health != registry.HealthWarning || !maps.Equal(got.Metadata, b.Metadata) {
				t.Fatalf("decoded instance %+v, want %+v", got, b)
			}
			if all[0].Weight != 1 || all[2].Health != registry.HealthCritical {
				t.Fatalf("decoded a = %+v, d = %+v", all[0], all[2])
			}
		})
	}
}

func TestInstancesUnknownServiceAndBadName(t *testing.T) {
	_, c := testRegion(t, Options{})
	got, err := c.Instances("nothing")
	if err != nil || len(got) != 0 {
		t.Fatalf("Instances(nothing) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "a/b"} {
		if _, err := c.Instances(bad); !errors.Is(err, registry.ErrInvalid) {
			t.Fatalf("Instances(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

// The cached slice is handed out until the service's own entries change:
// commits elsewhere in the region do not rebuild it.
func TestInstancesCachedUntilServiceChanges(t *testing.T) {
	w, c := testRegion(t, Options{})
	putInstance(t, w, inst("orders", "a", 1))
	putInstance(t, w, inst("orders", "b", 2))
	first, _ := c.Instances("orders")
	version := func() uint64 {
		sc, _ := c.service("orders")
		return sc.cur.Load().version
	}
	v0 := version()
	again, _ := c.Instances("orders")
	if &again[0] != &first[0] {
		t.Fatal("unchanged region: a new slice was built")
	}
	// Other keys change: the service is re-scanned, found equal, kept.
	if err := w.Put([]byte("config/x"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	putInstance(t, w, inst("payments", "p", 3))
	again, _ = c.Instances("orders")
	if &again[0] != &first[0] || version() != v0 {
		t.Fatal("commit to other keys rebuilt the service's instances")
	}
	// Rewriting an instance with the same bytes changes nothing either.
	putInstance(t, w, inst("orders", "a", 1))
	if again, _ = c.Instances("orders"); &again[0] != &first[0] {
		t.Fatal("identical rewrite rebuilt the service's instances")
	}
	// A real change is seen at once.
	putInstance(t, w, inst("orders", "a", 11))
	changed, _ := c.Instances("orders")
	if changed[0].Port != 11 || version() != v0+1 {
		t.Fatalf("after change: %+v, version %d", changed[0], version())
	}
	if first[0].Port != 1 {
		t.Fatal("the earlier slice was modified in place")
	}
	// The unchanged instance's decoding is reused, not redone.
	if changed[1].Metadata != nil || changed[1].ID != "b" {
		t.Fatalf("b = %+v", changed[1])
	}
	putInstance(t, w, inst("orders", "c", 3))
	deleteKey(t, w, inst("orders", "a", 0).Key())
	got, _ := c.Instances("orders")
	if !slices.Equal(ids(got), []string{"b", "c"}) {
		t.Fatalf("after add and delete: %v", ids(got))
	}
	deleteKey(t, w, inst("orders", "c", 0).Key())
	if got, _ = c.Instances("orders"); !slices.Equal(ids(got), []string{"b"}) {
		t.Fatalf("after deleting the last key: %v", ids(got))
	}
}

// Readers racing a writer always see a consistent set: every instance they
// get decodes to what some commit wrote (run under -race).
func TestInstancesConcurrentWithWriter(t *testing.T) {
	w, c := testRegion(t, Options{})
	putInstance(t, w, inst("orders", "a", 1))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := c.Instances("orders")
				if err != nil {
					t.Error(err)
					return
				}
				for _, in := range got {
					if in.Service != "orders" || in.Port < 1 {
						t.Errorf("bad instance %+v", in)
						return
					}
				}
			}
		}()
	}
	for i := range 300 {
		putInstance(t, w, inst("orders", "b", i+1))
		if i%3 == 0 {
			deleteKey(t, w, inst("orders", "b", 0).Key())
		}
	}
	close(stop)
	wg.Wait()
	got, _ := c.Instances("orders")
	if !slices.Equal(ids(got), []string{"a", "b"}) || got[1].Port != 300 {
		t.Fatalf("final state %+v", got)
	}
}

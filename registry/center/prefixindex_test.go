package center

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestPrefixIndexMatchesAScan: under random groups coming and going, the
// index finds exactly the groups a scan of every group's prefixes finds.
func TestPrefixIndexMatchesAScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"", "s", "svc/", "svc/a", "svc/a/", "svc/ab/", "cfg/", "cfg/x", "c"}
	var x prefixIndex
	live := map[*group]bool{}
	for step := range 5000 {
		if r.IntN(3) == 0 || len(live) == 0 {
			n := 1 + r.IntN(3)
			g := &group{key: fmt.Sprint(step)}
			for range n {
				g.prefixes = append(g.prefixes, words[r.IntN(len(words))])
			}
			x.add(g)
			live[g] = true
		} else if r.IntN(2) == 0 {
			for g := range live {
				x.remove(g)
				delete(live, g)
				break
			}
		}
		key := words[r.IntN(len(words))] + string(rune('a'+r.IntN(3)))
		var got, want []string
		x.match(key, map[*group]bool{}, func(g *group) { got = append(got, g.key) })
		for g := range live {
			if hasAnyPrefix(key, g.prefixes) {
				want = append(want, g.key)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("step %d, key %q: index found %v, a scan %v", step, key, got, want)
		}
	}
	for g := range live {
		x.remove(g)
	}
	if len(x.root.groups) != 0 || len(x.root.next) != 0 {
		t.Fatalf("an empty index kept nodes: %+v", x.root)
	}
}

// TestPrefixSetKeys: the same set in any order has one key; sets that
// joined with a separator would look alike do not.
func TestPrefixSetKeys(t *testing.T) {
	if prefixSetKey([]string{"a/", "b/"}) != prefixSetKey([]string{"b/", "a/"}) {
		t.Fatal("order changes the key")
	}
	for _, pair := range [][2][]string{
		{{"app/\x00cfg/"}, {"cfg/", "app/"}},
		{{"a,b"}, {"a", "b"}},
		{{`a","b`}, {"a", "b"}},
		{{""}, {"", ""}},
	} {
		if prefixSetKey(pair[0]) == prefixSetKey(pair[1]) {
			t.Fatalf("%q and %q share a key", pair[0], pair[1])
		}
	}
}

package center

// prefixIndex finds the groups interested in a key: a trie of the groups'
// prefixes, walked along the key's bytes, so that matching a change costs
// the length of its key plus the groups it reaches, however many groups
// and subscribers there are.
type prefixIndex struct {
	root trieNode
}

type trieNode struct {
	next   map[byte]*trieNode
	groups []*group // groups with a prefix ending here
}

// add indexes g under each of its prefixes.
func (x *prefixIndex) add(g *group) {
	for _, p := range g.prefixes {
		n := &x.root
		for i := 0; i < len(p); i++ {
			if n.next == nil {
				n.next = make(map[byte]*trieNode)
			}
			c := n.next[p[i]]
			if c == nil {
				c = &trieNode{}
				n.next[p[i]] = c
			}
			n = c
		}
		n.groups = append(n.groups, g)
	}
}

// remove unindexes g (and prunes the branches left empty).
func (x *prefixIndex) remove(g *group) {
	for _, p := range g.prefixes {
		removeFrom(&x.root, p, g)
	}
}

// removeFrom removes g from the node at p below n and reports whether n
// is left empty.
func removeFrom(n *trieNode, p string, g *group) bool {
	if p == "" {
		for i, h := range n.groups {
			if h == g {
				n.groups = append(n.groups[:i], n.groups[i+1:]...)
				break
			}
		}
	} else if c := n.next[p[0]]; c != nil && removeFrom(c, p[1:], g) {
		delete(n.next, p[0])
	}
	return len(n.groups) == 0 && len(n.next) == 0
}

// match calls fn for every group with a prefix of key, once each, in no
// particular order; seen is scratch space the caller clears between keys.
func (x *prefixIndex) match(key string, seen map[*group]bool, fn func(*group)) {
	n := &x.root
	for i := 0; ; i++ {
		for _, g := range n.groups {
			if !seen[g] {
				seen[g] = true
				fn(g)
			}
		}
		if i == len(key) || n.next == nil {
			return
		}
		if n = n.next[key[i]]; n == nil {
			return
		}
	}
}

package steps

// linkSet holds a site's WireGuard links (either node lists the other in
// its peers), so that a check over many pairs does not scan peer lists.
type linkSet map[[2]string]bool

// links returns the site's links.
func (s *Site) links() linkSet {
	l := linkSet{}
	for _, n := range s.Nodes {
		for _, p := range n.Peers {
			l[linkPair(n.Name, p)] = true
		}
	}
	return l
}

// has tells whether a and b are linked; as Site.Linked for two nodes of
// the site.
func (l linkSet) has(a, b string) bool { return a != b && l[linkPair(a, b)] }

func linkPair(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// nodeIndex maps each node's name to the node (the first, if names repeat).
func (s *Site) nodeIndex() map[string]*Node {
	m := make(map[string]*Node, len(s.Nodes))
	for i := range s.Nodes {
		if _, dup := m[s.Nodes[i].Name]; !dup {
			m[s.Nodes[i].Name] = &s.Nodes[i]
		}
	}
	return m
}

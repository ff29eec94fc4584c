package tui

import (
	"fmt"
	"slices"
	"strings"

	"ztwizard/steps"
)

// meshPage describes the WireGuard mesh and its nodes.
func meshPage(*model) *formPage {
	return newFormPage(stepMesh,
		"A WireGuard mesh joins your nodes: each talks only to the peers you tick, and databases "+
			"listen only on the mesh.",
		newText("Mesh network", "The mesh's private network in CIDR form; every node gets one address of it.",
			"wireguard.network", text(func(s *steps.Site) *string { return &s.WireGuard.Network })).
			withHint(func(*env) string { return "e.g. 10.100.0.0/24" }),
		newText("Listen port", "The UDP port WireGuard listens on, on every node.",
			"wireguard.listen_port", number(func(s *steps.Site) *int { return &s.WireGuard.ListenPort })).
			withHint(func(*env) string { return fmt.Sprintf("%d (default)", steps.DefaultListenPort) }),
		newList("Nodes", "The hosts of the site. Enter edits, a adds, x removes.", nodeItems()),
	)
}

// nodeItems are the site's nodes.
func nodeItems() itemKind {
	return &items[steps.Node]{
		nounS: "node", pathS: "nodes",
		intro: "A host of the mesh. Tick the peers it talks to; a link works both ways.",
		list:  func(s *steps.Site) *[]steps.Node { return &s.Nodes },
		clone: func(n steps.Node) steps.Node { n.Peers = slices.Clone(n.Peers); return n },
		fresh: func(*env) steps.Node { return steps.Node{} },
		nameOf: func(n steps.Node) string {
			return n.Name
		},
		cols: func(e *env, _ int, n steps.Node) []string {
			addr := n.Address
			if addr == "" {
				addr = allocated(e, n.Name)
			}
			ep := n.Endpoint
			if ep == "" {
				ep = "dials out"
			}
			peers := "no peers"
			if l := links(e.site, n.Name, n.Peers); len(l) > 0 {
				peers = "↔ " + strings.Join(l, " ")
			}
			return []string{orNew(n.Name), addr, ep, peers}
		},
		editor: func(i int) []field {
			node := func(s *steps.Site) *steps.Node { return &s.Nodes[i] }
			p := func(f string) string { return fmt.Sprintf("nodes[%d].%s", i, f) }
			return []field{
				newText("Name", "The host's short name: lower-case letters, digits and hyphens.",
					p("name"), text(func(s *steps.Site) *string { return &node(s).Name })),
				newText("Endpoint", "host:port where the others reach it; empty for a node that only dials out (behind NAT).",
					p("endpoint"), text(func(s *steps.Site) *string { return &node(s).Endpoint })).
					withHint(func(*env) string { return "none: dials out" }),
				newText("Mesh address", "Its address in the mesh; empty takes the next free one.",
					p("address"), text(func(s *steps.Site) *string { return &node(s).Address })).
					withHint(func(e *env) string {
						if a := allocated(e, node(e.site).Name); a != "" {
							return a + " (allocated)"
						}
						return "allocated"
					}),
				newMulti("Peers", "The nodes it talks to (a link ticked on either node counts): space ticks, ←/→ move.",
					p("peers"), func(s *steps.Site) *[]string { return &node(s).Peers },
					func(e *env) []string { return otherNodes(e.site, node(e.site).Name) }, "no other nodes yet").
					withImplied(func(e *env) []string { return linkedFrom(e.site, node(e.site).Name) },
						func(e *env, other string) { unlink(e.site, other, node(e.site).Name) }),
				newText("Keepalive", "How often a node behind NAT sends a keepalive: 25s is usual (or just 25); empty for none.",
					p("keepalive"), seconds(func(s *steps.Site) *int { return &node(s).Keepalive })).
					withHint(func(*env) string { return "off" }),
			}
		},
		usedBy: func(s *steps.Site, name string) []string {
			var out []string
			for _, sv := range s.Services {
				if sv.Node == name {
					out = append(out, fmt.Sprintf("service %s runs on it and needs another node (mTLS services)", orNew(sv.Name)))
				}
			}
			for _, d := range s.Databases {
				if d.Node == name {
					out = append(out, fmt.Sprintf("database %s runs on it and needs another node (Databases)", orNew(d.Name)))
				}
				if slices.Contains(d.Clients, name) {
					out = append(out, fmt.Sprintf("database %s loses it as a client (Databases)", orNew(d.Name)))
				}
			}
			var own []string
			if n, ok := s.Node(name); ok {
				own = n.Peers
			}
			if l := links(s, name, own); len(l) > 0 {
				out = append(out, fmt.Sprintf("its links to %s go (WireGuard mesh)", strings.Join(l, ", ")))
			}
			return out
		},
		forget: func(s *steps.Site, name string) {
			for i := range s.Nodes {
				s.Nodes[i].Peers = without(s.Nodes[i].Peers, name)
			}
			for i := range s.Databases {
				s.Databases[i].Clients = without(s.Databases[i].Clients, name)
			}
		},
		follow: func(s *steps.Site, old, name string) {
			for i := range s.Nodes {
				rename(s.Nodes[i].Peers, old, name)
			}
			for i := range s.Services {
				if s.Services[i].Node == old {
					s.Services[i].Node = name
				}
			}
			for i := range s.Databases {
				if s.Databases[i].Node == old {
					s.Databases[i].Node = name
				}
				rename(s.Databases[i].Clients, old, name)
			}
		},
	}
}

// allocated is the mesh address a node gets, "" when none can be told.
func allocated(e *env, name string) string {
	if name == "" {
		return ""
	}
	if a, ok := e.sess.addresses(e.site)[name]; ok {
		return a.String()
	}
	return ""
}

// linkedFrom are the nodes that name a node among their peers: links
// work both ways, so they are its peers too.
func linkedFrom(s *steps.Site, name string) []string {
	var out []string
	if name == "" {
		return nil
	}
	for _, n := range s.Nodes {
		if n.Name != name && slices.Contains(n.Peers, name) {
			out = append(out, n.Name)
		}
	}
	return out
}

// links are a node's peers from both sides: its own list, then the nodes
// that list it.
func links(s *steps.Site, name string, own []string) []string {
	out := slices.Clone(own)
	for _, o := range linkedFrom(s, name) {
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// unlink removes name from node from's peers.
func unlink(s *steps.Site, from, name string) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == from {
			s.Nodes[i].Peers = without(s.Nodes[i].Peers, name)
		}
	}
}

// nodeNames are the names of the site's nodes.
func nodeNames(s *steps.Site) []string {
	var out []string
	for _, n := range s.Nodes {
		if n.Name != "" {
			out = append(out, n.Name)
		}
	}
	return out
}

// otherNodes are the nodes but one.
func otherNodes(s *steps.Site, self string) []string {
	return slices.DeleteFunc(nodeNames(s), func(n string) bool { return n == self })
}

// nodeOptions are the nodes as options of a select field.
func nodeOptions(e *env) []option {
	var out []option
	for _, n := range nodeNames(e.site) {
		out = append(out, option{n, n})
	}
	return out
}

func orNew(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return name
}

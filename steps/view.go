package steps

import (
	"fmt"
	"net/netip"
	"slices"
)

// ViewFor returns node's view of the site: the site as node needs it to
// build its own plan, and nothing more. A node's bundle carries this view,
// not the whole site, so a node learns only the nodes it deals with: its
// WireGuard links, the nodes of the databases it uses and the clients of
// its own, the admin nodes and the CA host. Its services, its databases
// and those it is a client of, and the clients its services allow stay;
// the rest goes. Every node kept has its mesh address written out (addrs,
// as MeshAddresses gives them), since addresses a site leaves out are
// given by a node's place among all nodes.
//
// The admin nodes, the CA host and, when ssh.mesh_access is "all", every
// node may reach every other node's sshd over the mesh: their view keeps
// every node. The plan built from a view equals the plan built from the
// site but for the site file itself and the host names in the
// @cert-authority line of ssh_known_hosts, which names the nodes of the
// view (TestViewPlans).
func (s *Site) ViewFor(node string, addrs map[string]netip.Addr) (*Site, error) {
	if _, ok := s.Node(node); !ok {
		return nil, fmt.Errorf("view: the site has no node %q", node)
	}
	keep := map[string]bool{node: true}
	all := s.SSH.MeshAccess == MeshSSHAll || s.CA.Host == node || slices.Contains(s.SSH.AdminNodes, node)
	if all {
		for _, n := range s.Nodes {
			keep[n.Name] = true
		}
	}
	for _, l := range s.Links(node) {
		keep[l] = true
	}
	for _, n := range s.SSH.AdminNodes {
		keep[n] = true
	}
	if s.CA.Host != "" {
		keep[s.CA.Host] = true
	}
	var dbs []Database
	for _, db := range s.Databases {
		switch {
		case db.Node == node:
			for _, c := range db.Clients {
				keep[c] = true
			}
		case slices.Contains(db.Clients, node):
			keep[db.Node] = true
		default:
			if !all {
				continue
			}
		}
		dbs = append(dbs, db)
	}

	v := *s
	v.Nodes = make([]Node, 0, len(keep))
	for _, n := range s.Nodes {
		if !keep[n.Name] {
			continue
		}
		a, ok := addrs[n.Name]
		if !ok || !a.IsValid() {
			return nil, fmt.Errorf("view: no mesh address for node %q", n.Name)
		}
		n.Address = a.String()
		n.Peers = slices.DeleteFunc(slices.Clone(n.Peers), func(p string) bool { return !keep[p] })
		if n.Name != node && !all {
			// Who else a kept node links to is not this node's business.
			n.Peers = slices.DeleteFunc(n.Peers, func(p string) bool { return p != node })
		}
		v.Nodes = append(v.Nodes, n)
	}
	v.Databases = nil
	for _, db := range dbs {
		db.Clients = slices.DeleteFunc(slices.Clone(db.Clients), func(c string) bool { return !keep[c] })
		if db.Node != node && !all {
			db.Clients = []string{node}
		}
		v.Databases = append(v.Databases, db)
	}
	v.Services = nil
	clients := map[string]bool{}
	for _, sv := range s.Services {
		if sv.Node != node && !all {
			continue
		}
		v.Services = append(v.Services, sv)
		for _, c := range sv.Allow {
			clients[c] = true
		}
	}
	v.Clients = nil
	for _, c := range s.Clients {
		if all || clients[c.Name] {
			v.Clients = append(v.Clients, c)
		}
	}
	v.SSH.AdminNodes = slices.Clone(s.SSH.AdminNodes)
	v.SSH.AdminCIDRs = slices.Clone(s.SSH.AdminCIDRs)
	v.SSH.Users = slices.Clone(s.SSH.Users)
	v.Firewall.PublicTCP = slices.Clone(s.Firewall.PublicTCP)
	return &v, nil
}

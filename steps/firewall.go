package steps

import (
	"fmt"
	"net/netip"
	"slices"

	"ztwizard/steps/nft"
)

// Names of the sets in a node's firewall table.
const (
	SetAdminV4   = "admin_v4"   // ssh.admin_cidrs, IPv4
	SetAdminV6   = "admin_v6"   // ssh.admin_cidrs, IPv6
	SetPublicTCP = "public_tcp" // firewall.public_tcp
	SetDBClients = "db_clients" // client mesh address . database port, for this node's databases
	SetSSHNodes  = "ssh_nodes"  // mesh addresses of ssh.admin_nodes
)

// ICMP messages a node answers or takes, rate-limited by firewall.icmp_rate.
// Errors about connections the node made are accepted earlier as related.
var (
	limitedICMP = []nft.Value{
		nft.ICMPEchoRequest, nft.ICMPDestinationUnreachable, nft.ICMPTimeExceeded, nft.ICMPParameterProblem,
	}
	limitedICMPv6 = []nft.Value{
		nft.ICMPv6EchoRequest, nft.ICMPv6DestinationUnreachable, nft.ICMPv6PacketTooBig,
		nft.ICMPv6TimeExceeded, nft.ICMPv6ParameterProblem,
	}
	// neighbourDiscovery is never limited: IPv6 stops working without it.
	neighbourDiscovery = []nft.Value{
		nft.ICMPv6NDRouterSolicit, nft.ICMPv6NDRouterAdvert, nft.ICMPv6NDNeighborSolicit, nft.ICMPv6NDNeighborAdvert,
	}
)

// FirewallFor builds the node's firewall: the inet ztwizard table with an
// input chain that drops everything except loopback, established traffic,
// WireGuard, SSH from ssh.admin_cidrs and over the mesh from ssh.admin_nodes
// (or from every node with ssh.mesh_access "all"), firewall.public_tcp,
// this node's databases from their client nodes over the mesh, and
// rate-limited ICMP; a forward chain that drops; an output chain that
// accepts. Addresses and ports live in sets, so the number of rules does
// not grow with the site. addrs holds every node's mesh address and iface
// is the WireGuard link's name.
func FirewallFor(site *Site, node string, addrs map[string]netip.Addr, iface string) (*nft.Table, error) {
	s := site.Clone()
	s.SetDefaults()
	if _, ok := s.Node(node); !ok {
		return nil, fmt.Errorf("firewall: unknown node %q", node)
	}
	mesh, err := ValidPrefix(s.WireGuard.Network)
	if err != nil {
		return nil, fmt.Errorf("firewall: wireguard.network: %w", err)
	}
	if err := ValidPort(s.WireGuard.ListenPort); err != nil {
		return nil, fmt.Errorf("firewall: wireguard.listen_port: %w", err)
	}
	rate, err := nft.ParseRate(s.Firewall.ICMPRate)
	if err != nil {
		return nil, fmt.Errorf("firewall: firewall.icmp_rate: %w", err)
	}
	for i, p := range s.Firewall.PublicTCP {
		if err := ValidPort(p); err != nil {
			return nil, fmt.Errorf("firewall: firewall.public_tcp[%d]: %w", i, err)
		}
	}
	admin4, admin6, err := adminNets(s.SSH.AdminCIDRs)
	if err != nil {
		return nil, err
	}
	meshSaddr, meshType := nft.IPSaddr, nft.TypeIPv4Addr
	if mesh.Addr().Is6() {
		meshSaddr, meshType = nft.IP6Saddr, nft.TypeIPv6Addr
	}
	lo, wg := nft.Iface("lo"), nft.Iface(iface)
	limit := &nft.Limit{Rate: rate.Rate, Per: rate.Per}
	over := &nft.Limit{Rate: rate.Rate, Per: rate.Per, Over: true}

	t := &nft.Table{Sets: []nft.Set{
		{Name: SetAdminV4, Key: []nft.Type{nft.TypeIPv4Addr}, Interval: true, Elements: admin4},
		{Name: SetAdminV6, Key: []nft.Type{nft.TypeIPv6Addr}, Interval: true, Elements: admin6},
		{Name: SetPublicTCP, Key: []nft.Type{nft.TypeInetService}, Elements: ports(s.Firewall.PublicTCP)},
	}}
	// SSH over the mesh: from the admin nodes only, unless the site opens
	// it to every node.
	meshSSH := nft.Rule{Match: []nft.Match{nft.Is(nft.IifName, wg), nft.InSet(SetSSHNodes, meshSaddr), nft.Is(nft.TCPDport, nft.Port(SSHPort))}, Verdict: nft.Accept}
	if s.SSH.MeshAccess == MeshSSHAll {
		meshSSH.Match[1] = nft.Is(meshSaddr, nft.Net(mesh))
	} else {
		admins, err := sshNodes(s, mesh, addrs)
		if err != nil {
			return nil, err
		}
		t.Sets = append(t.Sets, nft.Set{Name: SetSSHNodes, Key: []nft.Type{meshType}, Elements: admins})
	}
	input := []nft.Rule{
		{Match: []nft.Match{nft.Is(nft.IifName, lo)}, Verdict: nft.Accept},
		// Conntrack files every echo request of one ping run (one ICMP id)
		// under one entry, established once the first is answered: a
		// flood would pass the established rule below the rate limit.
		{Match: []nft.Match{nft.Is(nft.ICMPType, nft.ICMPEchoRequest)}, Limit: over, Verdict: nft.Drop},
		{Match: []nft.Match{nft.Is(nft.ICMPv6Type, nft.ICMPv6EchoRequest)}, Limit: over, Verdict: nft.Drop},
		{Match: []nft.Match{nft.Is(nft.CtState, nft.StateEstablished|nft.StateRelated)}, Verdict: nft.Accept},
		{Match: []nft.Match{nft.Is(nft.CtState, nft.StateInvalid)}, Verdict: nft.Drop},
		{Match: []nft.Match{nft.Is(nft.UDPDport, nft.Port(s.WireGuard.ListenPort))}, Verdict: nft.Accept},
		{Match: []nft.Match{nft.InSet(SetAdminV4, nft.IPSaddr), nft.Is(nft.TCPDport, nft.Port(SSHPort))}, Verdict: nft.Accept},
		{Match: []nft.Match{nft.InSet(SetAdminV6, nft.IP6Saddr), nft.Is(nft.TCPDport, nft.Port(SSHPort))}, Verdict: nft.Accept},
		meshSSH,
		{Match: []nft.Match{nft.InSet(SetPublicTCP, nft.TCPDport)}, Verdict: nft.Accept},
	}
	if s.CA.Host == node {
		// The CA host publishes the CRL and KRL to every node of the mesh.
		input = append(input, nft.Rule{Match: []nft.Match{nft.Is(nft.IifName, wg), nft.Is(meshSaddr, nft.Net(mesh)), nft.Is(nft.TCPDport, nft.Port(PublishPort))}, Verdict: nft.Accept})
	}
	clients, err := dbClients(s, node, mesh, addrs)
	if err != nil {
		return nil, err
	}
	if len(clients) > 0 {
		t.Sets = append(t.Sets, nft.Set{Name: SetDBClients, Key: []nft.Type{meshType, nft.TypeInetService}, Elements: clients})
		input = append(input, nft.Rule{
			Match:   []nft.Match{nft.Is(nft.IifName, wg), nft.InSet(SetDBClients, meshSaddr, nft.TCPDport)},
			Verdict: nft.Accept,
		})
	}
	input = append(input,
		nft.Rule{Match: []nft.Match{nft.In(nft.ICMPType, limitedICMP...)}, Limit: limit, Verdict: nft.Accept},
		nft.Rule{Match: []nft.Match{nft.In(nft.ICMPv6Type, neighbourDiscovery...)}, Verdict: nft.Accept},
		nft.Rule{Match: []nft.Match{nft.In(nft.ICMPv6Type, limitedICMPv6...)}, Limit: limit, Verdict: nft.Accept},
	)
	t.Chains = []nft.Chain{
		{Name: "input", Hook: nft.Input, Policy: nft.Drop, Rules: input},
		{Name: "forward", Hook: nft.Forward, Policy: nft.Drop},
		{Name: "output", Hook: nft.Output, Policy: nft.Accept},
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("firewall: node %q: %w", node, err)
	}
	return t, nil
}

// adminNets splits ssh.admin_cidrs by family, leaving out networks inside
// another one (an interval set may not overlap).
func adminNets(cidrs []string) (v4, v6 []nft.Element, err error) {
	var nets []netip.Prefix
	for i, c := range cidrs {
		p, err := ValidPrefix(c)
		if err != nil {
			return nil, nil, fmt.Errorf("firewall: ssh.admin_cidrs[%d]: %w", i, err)
		}
		nets = append(nets, p)
	}
	slices.SortFunc(nets, func(a, b netip.Prefix) int { return a.Bits() - b.Bits() })
	var kept []netip.Prefix
	for _, p := range nets {
		if slices.ContainsFunc(kept, func(q netip.Prefix) bool { return q.Contains(p.Addr()) }) {
			continue
		}
		kept = append(kept, p)
		if p.Addr().Is4() {
			v4 = append(v4, nft.Element{nft.Net(p)})
		} else {
			v6 = append(v6, nft.Element{nft.Net(p)})
		}
	}
	return v4, v6, nil
}

func ports(ps []int) []nft.Element {
	out := make([]nft.Element, 0, len(ps))
	for _, p := range ps {
		out = append(out, nft.Element{nft.Port(p)})
	}
	return out
}

// sshNodes lists the mesh addresses of ssh.admin_nodes.
func sshNodes(s *Site, mesh netip.Prefix, addrs map[string]netip.Addr) ([]nft.Element, error) {
	var out []nft.Element
	for i, n := range s.SSH.AdminNodes {
		a, ok := addrs[n]
		switch {
		case !ok:
			return nil, fmt.Errorf("firewall: ssh.admin_nodes[%d]: node %q has no mesh address", i, n)
		case !mesh.Contains(a):
			return nil, fmt.Errorf("firewall: ssh.admin_nodes[%d]: node %q's address %s is outside wireguard.network %s", i, n, a, mesh)
		}
		out = append(out, nft.Element{nft.Addr(a)})
	}
	return out, nil
}

// dbClients lists client mesh address . port for every database on node.
func dbClients(s *Site, node string, mesh netip.Prefix, addrs map[string]netip.Addr) ([]nft.Element, error) {
	var out []nft.Element
	for _, db := range s.Databases {
		if db.Node != node {
			continue
		}
		if err := ValidPort(db.Port); err != nil {
			return nil, fmt.Errorf("firewall: database %q: %w", db.Name, err)
		}
		for _, c := range db.Clients {
			a, ok := addrs[c]
			switch {
			case !ok:
				return nil, fmt.Errorf("firewall: database %q: client node %q has no mesh address", db.Name, c)
			case !mesh.Contains(a):
				return nil, fmt.Errorf("firewall: database %q: client node %q's address %s is outside wireguard.network %s", db.Name, c, a, mesh)
			}
			out = append(out, nft.Element{nft.Addr(a), nft.Port(db.Port)})
		}
	}
	return out, nil
}

package steps

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/templates"
)

// Addresses gives every node its mesh address: the one the site names, else
// the one it had before (prev, as recorded in the state store), else the
// lowest free address of wireguard.network, in node order. So appending a
// node never renumbers the others, and with prev nothing ever moves.
func (s *Site) Addresses(prev map[string]netip.Addr) (map[string]netip.Addr, error) {
	network, err := ValidPrefix(s.WireGuard.Network)
	if err != nil {
		return nil, fmt.Errorf("wireguard.network: %w", err)
	}
	out := make(map[string]netip.Addr, len(s.Nodes))
	taken := map[netip.Addr]bool{}
	for _, n := range s.Nodes {
		if n.Address == "" {
			continue
		}
		a, err := netip.ParseAddr(n.Address)
		if err != nil || !network.Contains(a) || !usable(network, a) {
			return nil, fmt.Errorf("node %q: address %q is not usable in %s", n.Name, n.Address, network)
		}
		out[n.Name] = a
		taken[a] = true
	}
	for _, n := range s.Nodes {
		if _, done := out[n.Name]; done {
			continue
		}
		if a, ok := prev[n.Name]; ok && network.Contains(a) && usable(network, a) && !taken[a] {
			out[n.Name] = a
			taken[a] = true
		}
	}
	next := network.Addr().Next()
	for _, n := range s.Nodes {
		if _, done := out[n.Name]; done {
			continue
		}
		for next.IsValid() && network.Contains(next) && (taken[next] || !usable(network, next)) {
			next = next.Next()
		}
		if !next.IsValid() || !network.Contains(next) {
			return nil, fmt.Errorf("%s has no free address left for node %q (%d nodes)", network, n.Name, len(s.Nodes))
		}
		out[n.Name] = next
		taken[next] = true
	}
	return out, nil
}

// usable tells whether a may be given to a node: not the network's own
// address and, for IPv4, not its broadcast address.
func usable(network netip.Prefix, a netip.Addr) bool {
	if a == network.Masked().Addr() {
		return false
	}
	if a.Is4() && network.Bits() < 31 {
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		hostMask := uint32(1)<<(32-network.Bits()) - 1
		return v&hostMask != hostMask
	}
	return true
}

// LinkKey is the key of the WireGuard link between nodes a and b, the same
// whichever way round they are given. Secrets.PresharedKeys uses it.
func LinkKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return a + "/" + b
}

// Links returns the nodes node is a WireGuard peer of: those it lists and
// those that list it, sorted, without duplicates and never itself. A node
// that is not in the site has no links.
func (s *Site) Links(node string) []string {
	me, ok := s.Node(node)
	if !ok {
		return nil
	}
	names := make(map[string]bool, len(s.Nodes))
	for _, n := range s.Nodes {
		names[n.Name] = true
	}
	var out []string
	for _, p := range me.Peers {
		if p != node && names[p] {
			out = append(out, p)
		}
	}
	for _, n := range s.Nodes {
		if n.Name != node && slices.Contains(n.Peers, node) {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// wgQuickPeer is one [Peer] section of a wg-quick file.
type wgQuickPeer struct {
	Name         string
	PublicKey    string
	PresharedKey string // "" when the link has none
	AllowedIPs   string
	Endpoint     string // as the site writes it; "" when the peer has none
	Keepalive    int    // seconds; 0 for none
}

// appendTo appends the section, after the blank line that separates it
// from what comes before. The sections are written here, not by the
// template: a hub's file has one per node (a template took 2 ms for 1,000).
func (p wgQuickPeer) appendTo(b []byte) []byte {
	b = append(b, "\n\n[Peer]\n# "...)
	b = append(b, p.Name...)
	b = append(b, "\nPublicKey = "...)
	b = append(b, p.PublicKey...)
	if p.PresharedKey != "" {
		b = append(b, "\nPresharedKey = "...)
		b = append(b, p.PresharedKey...)
	}
	b = append(b, "\nAllowedIPs = "...)
	b = append(b, p.AllowedIPs...)
	if p.Endpoint != "" {
		b = append(b, "\nEndpoint = "...)
		b = append(b, p.Endpoint...)
	}
	if p.Keepalive != 0 {
		b = append(b, "\nPersistentKeepalive = "...)
		b = strconv.AppendInt(b, int64(p.Keepalive), 10)
	}
	return b
}

// wgQuickData is what templates/wg-quick.tmpl renders.
type wgQuickData struct {
	Site       string
	Node       string
	Address    string
	ListenPort int
	KeyPath    string
	Peers      string // the [Peer] sections, each from wgQuickPeer.appendTo
}

// WireGuardFor builds node's WireGuard interface and the files that go with
// it: the wg-quick file WireGuardConfDir/WireGuardName.conf, which names
// the private key by path and never holds it, and, when sec has this node's
// private key, the key file at WireGuardKeyPath. Both are written 0600.
//
// The interface has the node's mesh address with the mesh's prefix length
// and one peer per link (see Links), sorted by name. Addresses are the
// site's, else those in sec.Addresses, else allocated, as Addresses does. A peer's endpoint goes
// into the wgctrl configuration only when its host is an IP address: a DNS
// name is left for whoever applies the plan to resolve, as building a plan
// makes no lookups. The wg-quick file keeps the endpoint as the site writes
// it. Persistent keepalive is this node's own setting.
func WireGuardFor(site *Site, node string, sec *Secrets) (Interface, []File, error) {
	if sec == nil {
		sec = &Secrets{}
	}
	self, ok := site.Node(node)
	if !ok {
		return Interface{}, nil, fmt.Errorf("wireguard: no node %q in the site", node)
	}
	network, err := ValidPrefix(site.WireGuard.Network)
	if err != nil {
		return Interface{}, nil, fmt.Errorf("wireguard: wireguard.network: %w", err)
	}
	addrs, err := site.Addresses(sec.Addresses)
	if err != nil {
		return Interface{}, nil, fmt.Errorf("wireguard: %w", err)
	}
	own := netip.PrefixFrom(addrs[node], network.Bits())
	port := site.WireGuard.ListenPort
	if port == 0 {
		port = DefaultListenPort
	}
	var keepalive *time.Duration
	if self.Keepalive > 0 {
		d := time.Duration(self.Keepalive) * time.Second
		keepalive = &d
	}

	cfg := wgtypes.Config{ListenPort: &port, ReplacePeers: true}
	if sec.WireGuardKey != nil {
		k := *sec.WireGuardKey
		cfg.PrivateKey = &k
	}
	data := wgQuickData{
		Site:       site.Site,
		Node:       node,
		Address:    own.String(),
		ListenPort: port,
		KeyPath:    WireGuardKeyPath,
	}
	endpoints := map[wgtypes.Key]string{}
	index := site.nodeIndex()
	var names map[wgtypes.Key]string
	var peers []byte
	for _, name := range site.Links(node) {
		peer := index[name]
		if err := ValidName(name); err != nil {
			return Interface{}, nil, fmt.Errorf("wireguard: node %q: peer: %w", node, err)
		}
		pub, ok := sec.WireGuardPubs[name]
		if !ok {
			return Interface{}, nil, fmt.Errorf("wireguard: node %q: no WireGuard public key for its peer %q", node, name)
		}
		a := addrs[name]
		allowed := netip.PrefixFrom(a, a.BitLen())
		pc := wgtypes.PeerConfig{
			PublicKey:                   pub,
			PersistentKeepaliveInterval: keepalive,
			ReplaceAllowedIPs:           true,
			AllowedIPs:                  []net.IPNet{{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}},
		}
		qp := wgQuickPeer{
			Name:       name,
			PublicKey:  pub.String(),
			AllowedIPs: allowed.String(),
			Endpoint:   peer.Endpoint,
			Keepalive:  self.Keepalive,
		}
		if psk, ok := sec.PresharedKeys[LinkKey(node, name)]; ok {
			pc.PresharedKey = &psk
			qp.PresharedKey = psk.String()
		}
		if peer.Endpoint != "" {
			if err := ValidEndpoint(peer.Endpoint); err != nil {
				return Interface{}, nil, fmt.Errorf("wireguard: node %q: endpoint of peer %q: %w", node, name, err)
			}
			if ap, err := netip.ParseAddrPort(peer.Endpoint); err == nil {
				pc.Endpoint = net.UDPAddrFromAddrPort(ap)
			} else {
				endpoints[pub] = peer.Endpoint
			}
		}
		cfg.Peers = append(cfg.Peers, pc)
		peers = qp.appendTo(peers)
		if names == nil {
			names = map[wgtypes.Key]string{}
		}
		names[pub] = name
	}

	data.Peers = string(peers)
	conf, err := templates.Render("wg-quick.tmpl", data)
	if err != nil {
		return Interface{}, nil, fmt.Errorf("wireguard: node %q: %w", node, err)
	}
	files := []File{{
		Path:    path.Join(WireGuardConfDir, WireGuardName+".conf"),
		Mode:    0o600,
		Content: conf,
	}}
	if sec.WireGuardKey != nil {
		files = append(files, File{
			Path:    WireGuardKeyPath,
			Mode:    0o600,
			Content: []byte(sec.WireGuardKey.String() + "\n"),
		})
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	iface := Interface{
		Name:      WireGuardName,
		Addresses: []netip.Prefix{own},
		Config:    cfg,
		PeerNames: names,
	}
	if len(endpoints) > 0 {
		iface.Resolve = endpoints
	}
	return iface, files, nil
}

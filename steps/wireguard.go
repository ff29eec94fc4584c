package steps

import (
	"fmt"
	"net/netip"
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

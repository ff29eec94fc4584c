package steps

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"ztwizard/steps/nft"
	"ztwizard/steps/nft/nfttest"
)

// fwShape is the shape of a generated site: n nodes in a ring, each naming
// the next peers nodes as peers (only the first node, for a hub).
type fwShape struct {
	nodes, peers  int
	hub           bool
	servicesEvery int // a node in this many hosts services (0: none)
	services      int // services on such a node
	dbEvery       int // a node in this many hosts databases (0: none)
	dbs           int // databases on such a node (at least 1)
	dbClients     int // a database's clients: the node's next peers
	ipv6          bool
}

// fwSite generates a valid site of the given shape, with admin networks of
// both families, and returns it with every node's mesh address.
func fwSite(t testing.TB, sh fwShape) (*Site, map[string]netip.Addr) {
	t.Helper()
	s := &Site{
		Version:   Version,
		Site:      "gen",
		CA:        CA{Subject: Subject{CommonName: "Gen Root CA", Organization: "Gen"}},
		SSH:       SSH{AdminCIDRs: []string{"192.168.10.0/24", "2001:db8:10::/48", "203.0.113.7/32"}, Users: []SSHUser{{Name: "alice", Principals: []string{"root"}}}},
		WireGuard: WireGuard{Network: "10.100.0.0/16"},
		Clients:   []Client{{Name: "worker"}},
		Firewall:  Firewall{PublicTCP: []int{80, 443}},
	}
	if sh.ipv6 {
		s.WireGuard.Network = "fd00:100::/64"
	}
	name := func(i int) string { return fmt.Sprintf("n%d", i%sh.nodes) }
	peers := min(sh.peers, sh.nodes-1)
	for i := range sh.nodes {
		n := Node{Name: name(i), Endpoint: fmt.Sprintf("%s.example.net:51820", name(i))}
		for j := 1; j <= peers && (!sh.hub || i == 0); j++ {
			n.Peers = append(n.Peers, name(i+j))
		}
		s.Nodes = append(s.Nodes, n)
		if sh.servicesEvery > 0 && i%sh.servicesEvery == 0 {
			for j := range sh.services {
				s.Services = append(s.Services, Service{
					Name: fmt.Sprintf("s%d-%d", i, j), Node: name(i), ServerName: fmt.Sprintf("s%d-%d.example.com", i, j),
					Upstream: "http://127.0.0.1:8080", Allow: []string{"worker"},
				})
			}
		}
		for k := range max(sh.dbs, 1) {
			if sh.dbEvery == 0 || i%sh.dbEvery != 0 {
				break
			}
			engine := []string{EngineMariaDB, EnginePostgreSQL}[k%2]
			db := Database{Name: fmt.Sprintf("db%d-%d", i, k), Node: name(i), Engine: engine, Port: DefaultPort(engine) + k/2}
			for j := 1; j <= min(sh.dbClients, peers); j++ {
				db.Clients = append(db.Clients, name(i+j+k))
			}
			s.Databases = append(s.Databases, db)
		}
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("generated site is invalid: %v", err)
	}
	addrs, err := s.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, addrs
}

// fwRuleset is one node's firewall, named for subtests.
type fwRuleset struct {
	name  string
	table *nft.Table
}

// fwRulesets is the firewall of every node of the example site and of a
// 50-node site (IPv4 and IPv6 mesh).
func fwRulesets(t testing.TB) []fwRuleset {
	t.Helper()
	var out []fwRuleset
	add := func(prefix string, s *Site, addrs map[string]netip.Addr) {
		for _, n := range s.Nodes {
			tbl, err := FirewallFor(s, n.Name, addrs, WireGuardName)
			if err != nil {
				t.Fatalf("FirewallFor(%s/%s): %v", prefix, n.Name, err)
			}
			out = append(out, fwRuleset{prefix + "/" + n.Name, tbl})
		}
	}
	ex := Example()
	exAddrs, err := ex.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	add("example", ex, exAddrs)
	shape := fwShape{nodes: 50, peers: 3, servicesEvery: 5, services: 2, dbEvery: 7, dbs: 2, dbClients: 2}
	s, addrs := fwSite(t, shape)
	add("ring50", s, addrs)
	shape.ipv6 = true
	s, addrs = fwSite(t, shape)
	add("ring50v6", s, addrs)
	return out
}

func TestFirewallScriptsPassNftCheck(t *testing.T) {
	ns := nfttest.NewNS(t)
	for _, rs := range fwRulesets(t) {
		if err := ns.Check(rs.table.Script()); err != nil {
			t.Errorf("%s: nft -c rejects the script: %v", rs.name, err)
		}
	}
}

func TestFirewallNetlinkMatchesNft(t *testing.T) {
	for _, rs := range fwRulesets(t) {
		t.Run(rs.name, func(t *testing.T) {
			t.Parallel()
			viaNetlink, viaScript := nfttest.NewNS(t), nfttest.NewNS(t)
			if err := rs.table.Apply(viaNetlink.Conn()); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			viaScript.Nft(rs.table.Script(), "-f", "-")
			a := viaNetlink.List(nft.Family, nft.TableName)
			b := viaScript.List(nft.Family, nft.TableName)
			if a != b {
				t.Fatalf("netlink and nft -f differ:\n--- netlink\n%s\n--- nft -f\n%s", a, b)
			}
			if text := rs.table.Text(); text != b {
				t.Fatalf("Text() differs from nft list:\n--- Text\n%s\n--- nft list\n%s", text, b)
			}
			if ka, kb := viaNetlink.Netlink(nft.Family, nft.TableName), viaScript.Netlink(nft.Family, nft.TableName); ka != kb {
				t.Fatalf("kernel state differs:\n--- netlink\n%s\n--- nft -f\n%s", ka, kb)
			}
		})
	}
}

// fwRule finds the input rule that prints as want.
func fwRule(tbl *nft.Table, want string) bool {
	in, ok := tbl.Chain("input")
	return ok && slices.ContainsFunc(in.Rules, func(r nft.Rule) bool { return r.String() == want })
}

func fwElements(tbl *nft.Table, set string) []string {
	s, ok := tbl.Set(set)
	if !ok {
		return nil
	}
	out := []string{}
	for _, e := range s.Elements {
		out = append(out, e.String())
	}
	slices.Sort(out)
	return out
}

func TestFirewallFor(t *testing.T) {
	v6 := Example()
	v6.WireGuard.Network = "fd00:100::/64"
	v6.Nodes[0].Address, v6.Nodes[1].Address = "fd00:100::1", "fd00:100::2"
	v6.SSH.AdminCIDRs = []string{"2001:db8::/32", "10.0.0.0/8", "10.1.0.0/16", "2001:db8:1::/48"}
	v6.Firewall.ICMPRate = "600/minute"
	v6.Firewall.PublicTCP = []int{8443}
	v6.Services[0].Listen = 8443
	if err := v6.Validate(); err != nil {
		t.Fatal(err)
	}
	adminNode := Example()
	adminNode.SSH.AdminNodes = []string{"web"}
	meshAll := Example()
	meshAll.SSH.MeshAccess = MeshSSHAll
	for _, s := range []*Site{adminNode, meshAll} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name       string
		site       *Site
		node       string
		sets       map[string][]string // set -> its elements; nil: the set must not exist
		rules      []string            // input rules that must be there
		notRules   []string            // input rules that must not
		ruleCount  int
		wantErrSub string
	}{
		{
			name: "example db", site: Example(), node: "db",
			sets: map[string][]string{
				SetAdminV4: {"192.168.10.0/24"}, SetAdminV6: {}, SetPublicTCP: {"443", "80"},
				SetDBClients: {"10.100.0.2 . 3306"}, SetSSHNodes: {},
			},
			rules: []string{
				`iifname "lo" accept`,
				`icmp type echo-request limit rate over 10/second drop`,
				`icmpv6 type echo-request limit rate over 10/second drop`,
				`ct state established,related accept`,
				`ct state invalid drop`,
				`udp dport 51820 accept`,
				`ip saddr @admin_v4 tcp dport 22 accept`,
				`ip6 saddr @admin_v6 tcp dport 22 accept`,
				`iifname "zt0" ip saddr @ssh_nodes tcp dport 22 accept`,
				`tcp dport @public_tcp accept`,
				`iifname "zt0" ip saddr . tcp dport @db_clients accept`,
				`icmp type { destination-unreachable, echo-request, time-exceeded, parameter-problem } limit rate 10/second accept`,
				`icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept`,
				`icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request } limit rate 10/second accept`,
			},
			ruleCount: 14,
		},
		{
			name: "example web has no database rule", site: Example(), node: "web",
			sets:      map[string][]string{SetAdminV4: {"192.168.10.0/24"}, SetPublicTCP: {"443", "80"}, SetDBClients: nil},
			notRules:  []string{`iifname "zt0" ip saddr . tcp dport @db_clients accept`},
			ruleCount: 13,
		},
		{
			name: "ipv6 mesh", site: v6, node: "db",
			sets: map[string][]string{
				SetAdminV4: {"10.0.0.0/8"}, SetAdminV6: {"2001:db8::/32"}, SetPublicTCP: {"8443"},
				SetDBClients: {"fd00:100::2 . 3306"},
			},
			rules: []string{
				`iifname "zt0" ip6 saddr @ssh_nodes tcp dport 22 accept`,
				`iifname "zt0" ip6 saddr . tcp dport @db_clients accept`,
				`icmp type { destination-unreachable, echo-request, time-exceeded, parameter-problem } limit rate 600/minute accept`,
			},
			ruleCount: 14,
		},
		{
			name: "SSH over the mesh from an admin node", site: adminNode, node: "db",
			sets:      map[string][]string{SetSSHNodes: {"10.100.0.2"}},
			rules:     []string{`iifname "zt0" ip saddr @ssh_nodes tcp dport 22 accept`},
			notRules:  []string{`iifname "zt0" ip saddr 10.100.0.0/24 tcp dport 22 accept`},
			ruleCount: 14,
		},
		{
			name: "SSH over the mesh from every node", site: meshAll, node: "db",
			sets:      map[string][]string{SetSSHNodes: nil},
			rules:     []string{`iifname "zt0" ip saddr 10.100.0.0/24 tcp dport 22 accept`},
			notRules:  []string{`iifname "zt0" ip saddr @ssh_nodes tcp dport 22 accept`},
			ruleCount: 14,
		},
		{name: "unknown node", site: Example(), node: "nope", wantErrSub: `unknown node "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs, err := tc.site.Addresses(nil)
			if err != nil {
				t.Fatal(err)
			}
			tbl, err := FirewallFor(tc.site, tc.node, addrs, WireGuardName)
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("err = %v, want %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for set, want := range tc.sets {
				got := fwElements(tbl, set)
				if want == nil {
					if got != nil {
						t.Errorf("set %s exists: %v", set, got)
					}
					continue
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("set %s = %v, want %v", set, got, want)
				}
			}
			for _, r := range tc.rules {
				if !fwRule(tbl, r) {
					t.Errorf("missing rule %q in\n%s", r, tbl.Text())
				}
			}
			for _, r := range tc.notRules {
				if fwRule(tbl, r) {
					t.Errorf("unexpected rule %q", r)
				}
			}
			if got := tbl.RuleCount(); got != tc.ruleCount {
				t.Errorf("RuleCount = %d, want %d", got, tc.ruleCount)
			}
			in, _ := tbl.Chain("input")
			fwd, _ := tbl.Chain("forward")
			out, _ := tbl.Chain("output")
			if in.Policy != nft.Drop || fwd.Policy != nft.Drop || out.Policy != nft.Accept || len(fwd.Rules)+len(out.Rules) != 0 {
				t.Errorf("chains: input %v, forward %v (%d rules), output %v (%d rules)", in.Policy, fwd.Policy, len(fwd.Rules), out.Policy, len(out.Rules))
			}
		})
	}
}

func TestFirewallForErrors(t *testing.T) {
	ex := Example()
	addrs, err := ex.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	noWeb := map[string]netip.Addr{"db": addrs["db"]}
	outside := map[string]netip.Addr{"db": addrs["db"], "web": netip.MustParseAddr("10.200.0.2")}
	for _, tc := range []struct {
		name  string
		addrs map[string]netip.Addr
		iface string
		want  string
	}{
		{"client without address", noWeb, WireGuardName, `client node "web" has no mesh address`},
		{"client outside the mesh", outside, WireGuardName, "outside wireguard.network"},
		{"bad interface name", addrs, "much-too-long-name0", "interface name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FirewallFor(ex, "db", tc.addrs, tc.iface)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "firewall: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFirewallForDefaults(t *testing.T) {
	ex := Example()
	ex.Firewall.ICMPRate = ""
	ex.WireGuard.ListenPort = 0
	addrs, err := ex.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := FirewallFor(ex, "db", addrs, WireGuardName)
	if err != nil {
		t.Fatal(err)
	}
	if !fwRule(tbl, fmt.Sprintf("udp dport %d accept", DefaultListenPort)) || !strings.Contains(tbl.Text(), "limit rate "+DefaultICMPRate) {
		t.Fatalf("defaults not applied:\n%s", tbl.Text())
	}
	if ex.Firewall.ICMPRate != "" {
		t.Fatal("FirewallFor changed the site")
	}
}

func TestFirewallRuleCountFlat(t *testing.T) {
	shape := fwShape{peers: 10, servicesEvery: 1, services: 5, dbEvery: 1, dbClients: 10}
	var counts []int
	for _, n := range []int{10, 100, 1000} {
		shape.nodes = n
		s, addrs := fwSite(t, shape)
		for _, node := range []string{"n0", fmt.Sprintf("n%d", n/2), fmt.Sprintf("n%d", n-1)} {
			tbl, err := FirewallFor(s, node, addrs, WireGuardName)
			if err != nil {
				t.Fatal(err)
			}
			counts = append(counts, tbl.RuleCount())
			if got := len(fwElements(tbl, SetDBClients)); got != min(10, n-1) {
				t.Fatalf("%d nodes, %s: %d database clients, want %d", n, node, got, min(10, n-1))
			}
		}
	}
	for _, c := range counts {
		if c != counts[0] {
			t.Fatalf("rule count grows with the site: %v", counts)
		}
	}
}

func BenchmarkFirewallFor(b *testing.B) {
	s, addrs := fwSite(b, fwShape{nodes: 1000, peers: 10, servicesEvery: 1, services: 5, dbEvery: 1, dbClients: 10})
	for b.Loop() {
		if _, err := FirewallFor(s, "n500", addrs, WireGuardName); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply loads, over netlink in one batch, the firewall of a node
// whose database has 1,000 client peers, into a fresh namespace.
func BenchmarkApply(b *testing.B) {
	s, addrs := fwSite(b, fwShape{nodes: 1001, peers: 1000, hub: true, dbEvery: 1001, dbClients: 1000})
	tbl, err := FirewallFor(s, "n0", addrs, WireGuardName)
	if err != nil {
		b.Fatal(err)
	}
	if got := len(fwElements(tbl, SetDBClients)); got != 1000 {
		b.Fatalf("%d database clients, want 1000", got)
	}
	c := nfttest.NewNS(b).Conn()
	for b.Loop() {
		if err := tbl.Apply(c); err != nil {
			b.Fatal(err)
		}
	}
}

//go:build linux

package steps_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice/wgdevicetest"
)

func TestWGHelperProcess(t *testing.T) { wgdevicetest.HelperMain() }

// wgKey is a fixed Curve25519 private key derived from seed: sha256, clamped.
func wgKey(t testing.TB, seed string) wgtypes.Key {
	t.Helper()
	sum := sha256.Sum256([]byte(seed))
	sum[0] &= 248
	sum[31] = sum[31]&127 | 64
	k, err := wgtypes.NewKey(sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// meshSite is a valid site holding only the given mesh.
func meshSite(t testing.TB, network string, nodes []steps.Node) *steps.Site {
	t.Helper()
	s := steps.Example().Clone()
	s.WireGuard.Network = network
	s.Nodes = nodes
	s.Services, s.Databases = nil, nil
	if err := s.Validate(); err != nil {
		t.Fatalf("test site: %v", err)
	}
	return s
}

// wgSecrets holds fixed keys for every node of site, and preshared keys for
// the links named in psk.
type wgSecrets struct {
	priv map[string]wgtypes.Key
	pubs map[string]wgtypes.Key
	psks map[string]wgtypes.Key
}

func newWGSecrets(t testing.TB, site *steps.Site, psk ...[2]string) wgSecrets {
	t.Helper()
	s := wgSecrets{priv: map[string]wgtypes.Key{}, pubs: map[string]wgtypes.Key{}, psks: map[string]wgtypes.Key{}}
	for _, n := range site.Nodes {
		k := wgKey(t, "node:"+n.Name)
		s.priv[n.Name] = k
		s.pubs[n.Name] = k.PublicKey()
	}
	for _, l := range psk {
		key := steps.LinkKey(l[0], l[1])
		s.psks[key] = wgKey(t, "psk:"+key)
	}
	return s
}

// forNode is what a plan passes to WireGuardFor for node.
func (s wgSecrets) forNode(node string) *steps.Secrets {
	sec := &steps.Secrets{WireGuardPubs: s.pubs, PresharedKeys: s.psks}
	if k, ok := s.priv[node]; ok {
		sec.WireGuardKey = &k
	}
	return sec
}

func TestLinkKey(t *testing.T) {
	if steps.LinkKey("a", "b") != steps.LinkKey("b", "a") {
		t.Errorf("LinkKey depends on order: %q, %q", steps.LinkKey("a", "b"), steps.LinkKey("b", "a"))
	}
	keys := map[string]bool{}
	for _, pair := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "c"}, {"a", "bc"}, {"ab", "c"}} {
		k := steps.LinkKey(pair[0], pair[1])
		if keys[k] {
			t.Errorf("LinkKey(%q, %q) = %q repeats another link's key", pair[0], pair[1], k)
		}
		keys[k] = true
	}
}

func TestLinks(t *testing.T) {
	four := &steps.Site{Nodes: []steps.Node{
		{Name: "a", Peers: []string{"b"}},
		{Name: "b"},
		{Name: "c", Peers: []string{"a"}},
		{Name: "d"},
	}}
	both := &steps.Site{Nodes: []steps.Node{
		{Name: "x", Peers: []string{"z", "y"}},
		{Name: "y", Peers: []string{"x"}},
		{Name: "z", Peers: []string{"x"}},
	}}
	for _, tc := range []struct {
		name string
		site *steps.Site
		node string
		want []string
	}{
		{"lists one, listed by one", four, "a", []string{"b", "c"}},
		{"listed only", four, "b", []string{"a"}},
		{"lists only", four, "c", []string{"a"}},
		{"unlinked", four, "d", nil},
		{"unknown node", four, "e", nil},
		{"both sides list it, once", both, "x", []string{"y", "z"}},
		{"example db", steps.Example(), "db", []string{"web"}},
		{"example web", steps.Example(), "web", []string{"db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.site.Links(tc.node); !slices.Equal(got, tc.want) {
				t.Errorf("Links(%q) = %q, want %q", tc.node, got, tc.want)
			}
		})
	}
	for _, n := range four.Nodes {
		if slices.Contains(four.Links(n.Name), "d") {
			t.Errorf("Links(%q) has d, which nobody links", n.Name)
		}
	}
}

// featureSite has a hub with an IP endpoint, a leaf behind NAT that keeps
// the link alive, and a node reached by a DNS name.
func featureSite(t testing.TB) *steps.Site {
	return meshSite(t, "10.9.0.0/24", []steps.Node{
		{Name: "hub", Endpoint: "192.0.2.1:51820", Address: "10.9.0.1", Peers: []string{"leaf", "named"}},
		{Name: "leaf", Address: "10.9.0.2", Peers: []string{"hub"}, Keepalive: 25},
		{Name: "named", Endpoint: "vpn.example.com:51821"},
	})
}

// v6Site is a mesh on IPv6, with IPv6 endpoints.
func v6Site(t testing.TB) *steps.Site {
	return meshSite(t, "fd00:7a7a::/64", []steps.Node{
		{Name: "a", Endpoint: "[2001:db8::1]:51820", Peers: []string{"b", "c"}},
		{Name: "b", Endpoint: "[2001:db8::2]:51820", Keepalive: 15},
		{Name: "c", Peers: []string{"b"}, Keepalive: 25},
	})
}

// peerOf returns the peer of cfg with the public key of node.
func peerOf(t *testing.T, cfg wgtypes.Config, sec wgSecrets, node string) wgtypes.PeerConfig {
	t.Helper()
	for _, p := range cfg.Peers {
		if p.PublicKey == sec.pubs[node] {
			return p
		}
	}
	t.Fatalf("no peer for %q in the config", node)
	return wgtypes.PeerConfig{}
}

func TestWireGuardFor(t *testing.T) {
	site := featureSite(t)
	sec := newWGSecrets(t, site, [2]string{"hub", "leaf"})
	keepalive := 25 * time.Second

	for _, tc := range []struct {
		name  string
		node  string
		check func(t *testing.T, iface steps.Interface, conf string)
	}{
		{"address with the mesh prefix", "leaf", func(t *testing.T, iface steps.Interface, conf string) {
			want := []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24")}
			if !slices.Equal(iface.Addresses, want) || iface.Name != steps.WireGuardName {
				t.Errorf("interface %s %v, want %s %v", iface.Name, iface.Addresses, steps.WireGuardName, want)
			}
			if !strings.Contains(conf, "\nAddress = 10.9.0.2/24\n") {
				t.Errorf("wg-quick file has no Address = 10.9.0.2/24:\n%s", conf)
			}
		}},
		{"peers sorted by name, replaced", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			cfg := iface.Config
			if !cfg.ReplacePeers || len(cfg.Peers) != 2 ||
				cfg.Peers[0].PublicKey != sec.pubs["leaf"] || cfg.Peers[1].PublicKey != sec.pubs["named"] {
				t.Fatalf("peers %+v, want leaf then named, ReplacePeers", cfg.Peers)
			}
			if cfg.ListenPort == nil || *cfg.ListenPort != 51820 {
				t.Errorf("listen port %v, want 51820", cfg.ListenPort)
			}
			if cfg.PrivateKey == nil || *cfg.PrivateKey != sec.priv["hub"] {
				t.Errorf("private key %v, want hub's", cfg.PrivateKey)
			}
			for _, p := range cfg.Peers {
				if !p.ReplaceAllowedIPs {
					t.Errorf("peer %s: ReplaceAllowedIPs false", p.PublicKey)
				}
			}
			if strings.Index(conf, "# leaf") > strings.Index(conf, "# named") {
				t.Errorf("wg-quick peers not sorted:\n%s", conf)
			}
		}},
		{"allowed IPs are the peer's address alone", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			got := peerOf(t, iface.Config, sec, "leaf").AllowedIPs
			if len(got) != 1 || got[0].String() != "10.9.0.2/32" {
				t.Errorf("allowed IPs %v, want [10.9.0.2/32]", got)
			}
			if !strings.Contains(conf, "AllowedIPs = 10.9.0.2/32\n") {
				t.Errorf("wg-quick file lacks AllowedIPs = 10.9.0.2/32:\n%s", conf)
			}
		}},
		{"keepalive on the node that sets it", "leaf", func(t *testing.T, iface steps.Interface, conf string) {
			p := peerOf(t, iface.Config, sec, "hub")
			if p.PersistentKeepaliveInterval == nil || *p.PersistentKeepaliveInterval != keepalive {
				t.Errorf("keepalive %v, want %s", p.PersistentKeepaliveInterval, keepalive)
			}
			if !strings.Contains(conf, "PersistentKeepalive = 25\n") {
				t.Errorf("wg-quick file lacks PersistentKeepalive = 25:\n%s", conf)
			}
		}},
		{"no keepalive on its peer", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			for _, p := range iface.Config.Peers {
				if p.PersistentKeepaliveInterval != nil {
					t.Errorf("peer %s: keepalive %s, want none", p.PublicKey, *p.PersistentKeepaliveInterval)
				}
			}
			if strings.Contains(conf, "PersistentKeepalive") {
				t.Errorf("wg-quick file has a keepalive:\n%s", conf)
			}
		}},
		{"IP endpoint", "leaf", func(t *testing.T, iface steps.Interface, conf string) {
			p := peerOf(t, iface.Config, sec, "hub")
			if p.Endpoint == nil || p.Endpoint.String() != "192.0.2.1:51820" {
				t.Errorf("endpoint %v, want 192.0.2.1:51820", p.Endpoint)
			}
			if !strings.Contains(conf, "Endpoint = 192.0.2.1:51820\n") {
				t.Errorf("wg-quick file lacks the endpoint:\n%s", conf)
			}
		}},
		{"DNS endpoint left to the applier", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			if p := peerOf(t, iface.Config, sec, "named"); p.Endpoint != nil {
				t.Errorf("endpoint %v, want nil for a DNS name", p.Endpoint)
			}
			if !strings.Contains(conf, "Endpoint = vpn.example.com:51821\n") {
				t.Errorf("wg-quick file lacks Endpoint = vpn.example.com:51821:\n%s", conf)
			}
		}},
		{"no endpoint", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			if p := peerOf(t, iface.Config, sec, "leaf"); p.Endpoint != nil {
				t.Errorf("endpoint %v for a peer without one", p.Endpoint)
			}
			if strings.Count(conf, "Endpoint =") != 1 {
				t.Errorf("wg-quick file: want one endpoint (named's):\n%s", conf)
			}
		}},
		{"preshared key when the link has one", "leaf", func(t *testing.T, iface steps.Interface, conf string) {
			psk := sec.psks[steps.LinkKey("hub", "leaf")]
			p := peerOf(t, iface.Config, sec, "hub")
			if p.PresharedKey == nil || *p.PresharedKey != psk {
				t.Errorf("preshared key %v, want the link's", p.PresharedKey)
			}
			if !strings.Contains(conf, "PresharedKey = "+psk.String()+"\n") {
				t.Errorf("wg-quick file lacks the preshared key:\n%s", conf)
			}
		}},
		{"no preshared key when the link has none", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			if p := peerOf(t, iface.Config, sec, "named"); p.PresharedKey != nil {
				t.Errorf("preshared key %v, want none", p.PresharedKey)
			}
			if strings.Count(conf, "PresharedKey") != 1 {
				t.Errorf("wg-quick file: want one preshared key (leaf's):\n%s", conf)
			}
		}},
		{"private key by path only", "hub", func(t *testing.T, iface steps.Interface, conf string) {
			if strings.Contains(conf, sec.priv["hub"].String()) || strings.Contains(conf, "PrivateKey") {
				t.Errorf("wg-quick file holds the private key:\n%s", conf)
			}
			if !strings.Contains(conf, "\nPostUp = wg set %i private-key "+steps.WireGuardKeyPath+"\n") {
				t.Errorf("wg-quick file lacks the PostUp line:\n%s", conf)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iface, files, err := steps.WireGuardFor(site, tc.node, sec.forNode(tc.node))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, iface, string(fileAt(t, files, wgConfPath).Content))
		})
	}
}

var wgConfPath = filepath.Join(steps.WireGuardConfDir, steps.WireGuardName+".conf")

// fileAt returns the file at path, failing t if files has none.
func fileAt(t testing.TB, files []steps.File, path string) steps.File {
	t.Helper()
	for _, f := range files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no file at %s among %d files", path, len(files))
	return steps.File{}
}

func TestWireGuardFiles(t *testing.T) {
	site := steps.Example()
	sec := newWGSecrets(t, site)
	iface, files, err := steps.WireGuardFor(site, "web", sec.forNode("web"))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		if f.Mode != 0o600 || f.Owner != "" || f.Group != "" {
			t.Errorf("%s: mode %v owner %q:%q, want 0600 root:root", f.Path, f.Mode, f.Owner, f.Group)
		}
	}
	if want := []string{steps.WireGuardKeyPath, wgConfPath}; !slices.Equal(paths, sortedCopy(want)) {
		t.Errorf("files %q, want %q", paths, sortedCopy(want))
	}
	if got, want := string(fileAt(t, files, steps.WireGuardKeyPath).Content), sec.priv["web"].String()+"\n"; got != want {
		t.Errorf("key file %q, want %q", got, want)
	}
	want := `# WireGuard interface of node web of site oslo-prod, written by ztwizard.
# The private key stays in its own file and is set by PostUp.
[Interface]
Address = 10.100.0.2/24
ListenPort = 51820
PostUp = wg set %i private-key /etc/ztwizard/wireguard/private.key

[Peer]
# db
PublicKey = ` + sec.pubs["db"].String() + `
AllowedIPs = 10.100.0.1/32
Endpoint = 192.168.1.100:51820
PersistentKeepalive = 25
`
	if got := string(fileAt(t, files, wgConfPath).Content); got != want {
		t.Errorf("wg-quick file:\n%s\nwant:\n%s", got, want)
	}

	iface2, files2, err := steps.WireGuardFor(site, "web", sec.forNode("web"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(files, files2) || !reflect.DeepEqual(iface, iface2) {
		t.Error("WireGuardFor is not deterministic")
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestWireGuardForWithoutPrivateKey(t *testing.T) {
	site := steps.Example()
	sec := newWGSecrets(t, site)
	s := sec.forNode("db")
	s.WireGuardKey = nil
	iface, files, err := steps.WireGuardFor(site, "db", s)
	if err != nil {
		t.Fatal(err)
	}
	if iface.Config.PrivateKey != nil {
		t.Errorf("private key %v, want nil", iface.Config.PrivateKey)
	}
	if len(files) != 1 || files[0].Path != wgConfPath {
		t.Errorf("files %v, want only %s", files, wgConfPath)
	}
}

func TestWireGuardForIPv6(t *testing.T) {
	site := v6Site(t)
	sec := newWGSecrets(t, site, [2]string{"a", "b"})
	iface, files, err := steps.WireGuardFor(site, "b", sec.forNode("b"))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("fd00:7a7a::2/64"); !slices.Equal(iface.Addresses, []netip.Prefix{want}) {
		t.Errorf("addresses %v, want [%s]", iface.Addresses, want)
	}
	a := peerOf(t, iface.Config, sec, "a")
	if len(a.AllowedIPs) != 1 || a.AllowedIPs[0].String() != "fd00:7a7a::1/128" {
		t.Errorf("a's allowed IPs %v, want [fd00:7a7a::1/128]", a.AllowedIPs)
	}
	if a.Endpoint == nil || a.Endpoint.String() != "[2001:db8::1]:51820" {
		t.Errorf("a's endpoint %v, want [2001:db8::1]:51820", a.Endpoint)
	}
	if a.PersistentKeepaliveInterval == nil || *a.PersistentKeepaliveInterval != 15*time.Second {
		t.Errorf("keepalive %v, want 15s", a.PersistentKeepaliveInterval)
	}
	conf := string(fileAt(t, files, wgConfPath).Content)
	for _, line := range []string{"Address = fd00:7a7a::2/64", "AllowedIPs = fd00:7a7a::1/128", "Endpoint = [2001:db8::1]:51820", "AllowedIPs = fd00:7a7a::3/128"} {
		if !strings.Contains(conf, line+"\n") {
			t.Errorf("wg-quick file lacks %q:\n%s", line, conf)
		}
	}
}

func TestWireGuardForErrors(t *testing.T) {
	site := featureSite(t)
	sec := newWGSecrets(t, site)
	noNamed := sec.forNode("hub")
	noNamed.WireGuardPubs = map[string]wgtypes.Key{"hub": sec.pubs["hub"], "leaf": sec.pubs["leaf"]}

	for _, tc := range []struct {
		name string
		node string
		sec  *steps.Secrets
		want string // "" for success
	}{
		{"missing public key", "hub", noNamed, `no WireGuard public key for its peer "named"`},
		{"missing key of an unlinked node is fine", "leaf", noNamed, ""},
		{"unknown node", "nobody", sec.forNode("hub"), `no node "nobody"`},
		{"no secrets", "hub", nil, `node "hub": no WireGuard public key for its peer "leaf"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := steps.WireGuardFor(site, tc.node, tc.sec)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("WireGuardFor(%q): %v", tc.node, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("WireGuardFor(%q): %v, want an error containing %s", tc.node, err, tc.want)
			}
		})
	}
}

// ringSite is n nodes in a ring, each listing the next three. Every fifth
// node has no endpoint (it is behind NAT and keeps its links alive); every
// other node sets a keepalive too.
func ringSite(t testing.TB, n int) *steps.Site {
	nodes := make([]steps.Node, n)
	for i := range nodes {
		node := steps.Node{Name: fmt.Sprintf("n%02d", i)}
		if i%5 != 0 {
			node.Endpoint = fmt.Sprintf("198.51.100.%d:51820", i+1)
		}
		if i%2 == 1 || i%5 == 0 {
			node.Keepalive = 10 + i
		}
		for j := 1; j <= 3; j++ {
			node.Peers = append(node.Peers, fmt.Sprintf("n%02d", (i+j)%n))
		}
		nodes[i] = node
	}
	return meshSite(t, "10.200.0.0/24", nodes)
}

// ringPSKs gives every fourth node's link to its successor a preshared key.
func ringPSKs(n int) [][2]string {
	var out [][2]string
	for i := 0; i < n; i += 4 {
		out = append(out, [2]string{fmt.Sprintf("n%02d", i), fmt.Sprintf("n%02d", (i+1)%n)})
	}
	return out
}

// wantPeers is what `wg show dump` must list for node, worked out from the
// site itself: the nodes that list it or that it lists.
func wantPeers(t testing.TB, site *steps.Site, node string, sec wgSecrets) []wgdevicetest.Peer {
	t.Helper()
	addrs, err := site.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := site.Node(node)
	var out []wgdevicetest.Peer
	for _, other := range site.Nodes {
		if other.Name == node || !slices.Contains(self.Peers, other.Name) && !slices.Contains(other.Peers, node) {
			continue
		}
		p := wgdevicetest.Peer{
			PublicKey:    sec.pubs[other.Name].String(),
			PresharedKey: "(none)",
			Endpoint:     "(none)",
			AllowedIPs:   netip.PrefixFrom(addrs[other.Name], addrs[other.Name].BitLen()).String(),
			Keepalive:    "off",
		}
		if psk, ok := sec.psks[steps.LinkKey(node, other.Name)]; ok {
			p.PresharedKey = psk.String()
		}
		if ap, err := netip.ParseAddrPort(other.Endpoint); err == nil {
			p.Endpoint = ap.String()
		}
		if self.Keepalive > 0 {
			p.Keepalive = strconv.Itoa(self.Keepalive)
		}
		out = append(out, p)
	}
	return sortPeers(out)
}

// sortPeers drops what changes at run time (handshakes) and sorts by key.
func sortPeers(ps []wgdevicetest.Peer) []wgdevicetest.Peer {
	out := slices.Clone(ps)
	for i := range out {
		out[i].Handshake = 0
	}
	slices.SortFunc(out, func(a, b wgdevicetest.Peer) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	return out
}

// TestWireGuardRealDevices loads every node's wg-quick file, through
// wg-quick strip and wg setconf, into a real userspace device, and then
// its Interface.Config through wgctrl: both give the peers the site asks
// for. Each device runs in a network namespace of its own, so the
// handshakes it starts go nowhere and every device may use the same port.
func TestWireGuardRealDevices(t *testing.T) {
	wgdevicetest.RequireTools(t, "wg", "wg-quick", "ip")
	for _, tc := range []struct {
		name string
		site *steps.Site
		psks [][2]string
	}{
		{"example", steps.Example(), [][2]string{{"db", "web"}}},
		{"ring50", ringSite(t, 50), ringPSKs(50)},
		{"ipv6", v6Site(t), [][2]string{{"a", "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec := newWGSecrets(t, tc.site, tc.psks...)
			for _, n := range tc.site.Nodes {
				t.Run(n.Name, func(t *testing.T) {
					t.Parallel()
					checkRealDevice(t, tc.site, n.Name, sec)
				})
			}
		})
	}
}

func checkRealDevice(t *testing.T, site *steps.Site, node string, sec wgSecrets) {
	iface, files, err := steps.WireGuardFor(site, node, sec.forNode(node))
	if err != nil {
		t.Fatal(err)
	}
	want := wantPeers(t, site, node, sec)
	port := strconv.Itoa(site.WireGuard.ListenPort)
	dev := wgdevicetest.Start(t, wgdevicetest.Options{Isolated: true})
	dir := t.TempDir()
	write := func(name string, content []byte) string { return testenv.WriteFile(t, dir, name, content) }

	// The wg-quick way: strip the file, load it, set the key as PostUp does.
	confPath := write(dev.Name+".conf", fileAt(t, files, wgConfPath).Content)
	stripped := testenv.MustRun(t, "wg-quick", "strip", confPath)
	testenv.MustRun(t, "wg", "setconf", dev.Name, write("stripped.conf", []byte(stripped)))
	testenv.MustRun(t, "wg", "set", dev.Name, "private-key", write("private.key", fileAt(t, files, steps.WireGuardKeyPath).Content))
	viaFile := wgdevicetest.Show(t, dev.Name)
	if viaFile.PrivateKey != sec.priv[node].String() || viaFile.ListenPort != port {
		t.Errorf("wg-quick file: key %s port %s, want %s %s", viaFile.PrivateKey, viaFile.ListenPort, sec.priv[node], port)
	}
	if got := sortPeers(viaFile.Peers); !reflect.DeepEqual(got, want) {
		t.Errorf("wg-quick file: peers\n%+v\nwant\n%+v", got, want)
	}

	// Forget all of it, then the wgctrl way.
	testenv.MustRun(t, "wg", "setconf", dev.Name, write("reset.conf", []byte("[Interface]\nListenPort = 0\n")))
	testenv.MustRun(t, "wg", "set", dev.Name, "private-key", "/dev/null")
	if reset := wgdevicetest.Show(t, dev.Name); len(reset.Peers) != 0 || reset.PrivateKey != "(none)" || reset.ListenPort == port {
		t.Fatalf("device not reset: %+v", reset)
	}
	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := iface.Config
	key := sec.priv[node]
	cfg.PrivateKey = &key
	if err := c.ConfigureDevice(dev.Name, cfg); err != nil {
		t.Fatalf("wgctrl ConfigureDevice: %v", err)
	}
	viaCtrl := wgdevicetest.Show(t, dev.Name)
	if viaCtrl.PrivateKey != key.String() || viaCtrl.ListenPort != port {
		t.Errorf("wgctrl: key %s port %s, want %s %s", viaCtrl.PrivateKey, viaCtrl.ListenPort, key, port)
	}
	if got := sortPeers(viaCtrl.Peers); !reflect.DeepEqual(got, sortPeers(viaFile.Peers)) {
		t.Errorf("wgctrl peers\n%+v\ndiffer from the wg-quick file's\n%+v", got, sortPeers(viaFile.Peers))
	}
}

// TestWireGuardRealDNSEndpoint shows where a DNS endpoint goes: wg-quick
// strip keeps the name and wg setconf resolves it, while the wgctrl
// configuration leaves the peer without an endpoint for the applier.
func TestWireGuardRealDNSEndpoint(t *testing.T) {
	wgdevicetest.RequireTools(t, "wg", "wg-quick", "ip")
	site := meshSite(t, "10.9.0.0/24", []steps.Node{
		{Name: "here", Peers: []string{"there"}},
		{Name: "there", Endpoint: "localhost:51820"},
	})
	sec := newWGSecrets(t, site)
	iface, files, err := steps.WireGuardFor(site, "here", sec.forNode("here"))
	if err != nil {
		t.Fatal(err)
	}
	dev := wgdevicetest.Start(t, wgdevicetest.Options{Isolated: true})
	conf := filepath.Join(t.TempDir(), dev.Name+".conf")
	if err := os.WriteFile(conf, fileAt(t, files, wgConfPath).Content, 0o600); err != nil {
		t.Fatal(err)
	}
	stripped := testenv.MustRun(t, "wg-quick", "strip", conf)
	if !strings.Contains(stripped, "Endpoint = localhost:51820\n") {
		t.Fatalf("wg-quick strip dropped the DNS endpoint:\n%s", stripped)
	}
	if err := os.WriteFile(conf, []byte(stripped), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.MustRun(t, "wg", "setconf", dev.Name, conf)
	if d := wgdevicetest.Show(t, dev.Name); len(d.Peers) != 1 || (d.Peers[0].Endpoint != "127.0.0.1:51820" && d.Peers[0].Endpoint != "[::1]:51820") {
		t.Errorf("wg setconf: peers %+v, want localhost resolved", d.Peers)
	}

	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ConfigureDevice(dev.Name, iface.Config); err != nil {
		t.Fatal(err)
	}
	if d := wgdevicetest.Show(t, dev.Name); len(d.Peers) != 1 || d.Peers[0].Endpoint != "(none)" {
		t.Errorf("wgctrl: peers %+v, want one without an endpoint", d.Peers)
	}
}

// TestWireGuardHandshakeNetns joins two namespaces with a veth pair, runs a
// device in each from a thread that entered it, configures both from their
// plans, and pings across the mesh.
func TestWireGuardHandshakeNetns(t *testing.T) {
	wgdevicetest.RequireTools(t, "wg", "ip")
	nsA, nsB := testenv.NewNetns(t, "ztn"), testenv.NewNetns(t, "ztn")
	vethA, vethB := testenv.Unique(t, "ztv"), testenv.Unique(t, "ztv")
	testenv.MustRun(t, "ip", "-n", nsA, "link", "add", vethA, "type", "veth", "peer", "name", vethB, "netns", nsB)
	for _, l := range []struct{ ns, link, addr string }{{nsA, vethA, "192.0.2.1/24"}, {nsB, vethB, "192.0.2.2/24"}} {
		testenv.MustRun(t, "ip", "-n", l.ns, "addr", "add", l.addr, "dev", l.link)
		testenv.MustRun(t, "ip", "-n", l.ns, "link", "set", l.link, "up")
	}

	site := meshSite(t, "10.77.0.0/24", []steps.Node{
		{Name: "a", Endpoint: "192.0.2.1:51820", Peers: []string{"b"}},
		{Name: "b", Endpoint: "192.0.2.2:51820", Keepalive: 5},
	})
	sec := newWGSecrets(t, site, [2]string{"a", "b"})
	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	devs := map[string]*wgdevicetest.Device{}
	for node, ns := range map[string]string{"a": nsA, "b": nsB} {
		iface, _, err := steps.WireGuardFor(site, node, sec.forNode(node))
		if err != nil {
			t.Fatal(err)
		}
		dev := wgdevicetest.Start(t, wgdevicetest.Options{NetNS: ns})
		devs[node] = dev
		if err := c.ConfigureDevice(dev.Name, iface.Config); err != nil {
			t.Fatalf("%s: ConfigureDevice: %v", node, err)
		}
		for _, p := range iface.Addresses {
			testenv.MustRun(t, "ip", "-n", ns, "addr", "add", p.String(), "dev", dev.Name)
		}
	}

	var icmp net.PacketConn
	if err := testenv.InNetns(nsA, func() (err error) {
		icmp, err = net.ListenPacket("ip4:icmp", "10.77.0.1")
		return err
	}); err != nil {
		t.Fatalf("ICMP socket in %s: %v", nsA, err)
	}
	defer icmp.Close()
	if err := ping(icmp, netip.MustParseAddr("10.77.0.2"), 20*time.Second); err != nil {
		t.Fatalf("ping 10.77.0.2 from a over the mesh: %v", err)
	}
	for node, dev := range devs {
		d := wgdevicetest.Show(t, dev.Name)
		if len(d.Peers) != 1 || d.Peers[0].Handshake == 0 {
			t.Errorf("%s: wg show reports no handshake: %+v", node, d.Peers)
		}
	}
}

// ping sends ICMP echo requests to dst on conn, one every half second,
// until a reply comes or the time is up.
func ping(conn net.PacketConn, dst netip.Addr, within time.Duration) error {
	const id = 0x5a7e
	deadline := time.Now().Add(within)
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		msg := testenv.EchoRequest(id, seq)
		if _, err := conn.WriteTo(msg, to); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break // timed out: send the next one
			}
			reply := buf[:n]
			if from.String() == dst.String() && n >= 8 && reply[0] == 0 &&
				binary.BigEndian.Uint16(reply[4:]) == id && bytes.Equal(reply[8:], msg[8:]) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply within %s", within)
}

package image

import (
	"cmp"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/templates"
)

// Paths an image adds to a plan's.
const (
	// NodeFilePath names the node an image or seed made, as every plan
	// does; golden images without a seed have none.
	NodeFilePath = steps.NodeFilePath
	// StaticNetworkPath is the fixed-address network file (Network.Address).
	StaticNetworkPath = "/etc/systemd/network/10-ztwizard.network"
	// DHCPNetworkPath is the DHCP network file every image has.
	DHCPNetworkPath = "/etc/systemd/network/90-ztwizard-dhcp.network"
	// SelfCheckUnit prints the ZTWIZARD-SELFCHECK line once the node is up.
	SelfCheckUnit = "ztwizard-selfcheck.service"
	// WireGuardUnit brings the mesh up: the kernel's WireGuard, made with
	// netlink and configured with wgctrl, without waiting for the network.
	WireGuardUnit = "ztwizard-wg@" + steps.WireGuardName + ".service"
	// GoldenHostname is a golden image's host name until a seed names it.
	GoldenHostname = "ztwizard-golden"
)

// Network is how an image's Ethernet interfaces get their address.
type Network struct {
	Address string   // a fixed address and prefix, 192.168.1.100/24; empty: DHCP
	Gateway string   // the default gateway, with Address
	DNS     []string // name servers, with Address
}

// Content is what makes an image (or a golden image plus a seed) one node:
// its files, the units to enable and its host name.
type Content struct {
	Site     string       // the site's name
	Node     string       // the node; "" for a golden image
	Hostname string       // the host name
	Files    []steps.File // sorted by path, one per path
	Enable   []string     // units to enable
	Plain    bool         // a plain server (PlainContent): no ztwizard units of its own
	// Bundle is the node's signed bundle (a seed's): first boot builds the
	// node's plan from it and writes it with Files.
	Bundle []byte
}

// HostKey is an SSH host key pair in OpenSSH's formats.
type HostKey struct {
	Private []byte // the OpenSSH private key (PEM)
	Public  []byte // the authorized_keys line
	Key     ssh.PublicKey
}

// NewHostKey makes an Ed25519 host key.
func NewHostKey(comment string) (*HostKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("image: host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("image: host key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("image: host key: %w", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment + "\n"
	return &HostKey{Private: pem.EncodeToMemory(block), Public: []byte(line), Key: sp}, nil
}

// NodeContent is a node's content: its plan's files, its SSH host key when
// given (the plan then carries the key's certificate), its name, network
// and the units its plan enables plus the WireGuard interface.
func NodeContent(plan *steps.Plan, host *HostKey, net Network) (*Content, error) {
	c := &Content{Site: plan.Site, Node: plan.Node, Hostname: plan.Node}
	c.Files = slices.Clone(plan.Files)
	if host != nil {
		c.Files = append(c.Files,
			steps.File{Path: steps.SSHHostKeyPath, Mode: 0o600, Content: host.Private},
			steps.File{Path: steps.SSHHostKeyPath + ".pub", Mode: 0o644, Content: host.Public})
	}
	hf, err := HostFiles(c.Hostname)
	if err != nil {
		return nil, err
	}
	nf, err := NetworkFiles(net)
	if err != nil {
		return nil, err
	}
	c.Files = append(append(c.Files, hf...), nf...)
	for _, u := range plan.Units {
		if u.Enable {
			c.Enable = append(c.Enable, u.Name)
		}
	}
	c.Enable = append(c.Enable, WireGuardUnit)
	return c, c.sort()
}

// PlainHostKeysUnit makes a plain server's SSH host keys on its first boot,
// as Debian's installer would have.
const PlainHostKeysUnit = "ztwizard-plain-hostkeys.service"

// PlainContent is a plain Debian server's content, with no site in it: its
// host name, its network and the unit that makes its SSH host keys on the
// first boot. Such an image is what ztwizard's live path meets on a real
// server: stock daemons on their default addresses, ztwizard not applied.
func PlainContent(hostname string, net Network) (*Content, error) {
	c := &Content{Hostname: hostname, Plain: true}
	hf, err := HostFiles(hostname)
	if err != nil {
		return nil, err
	}
	nf, err := NetworkFiles(net)
	if err != nil {
		return nil, err
	}
	unit, err := templates.Render("image-plain-hostkeys.tmpl", nil)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	c.Files = append(append(hf, nf...), steps.File{Path: steps.SystemdDir + "/" + PlainHostKeysUnit, Mode: 0o644, Content: unit})
	c.Enable = []string{PlainHostKeysUnit}
	return c, c.sort()
}

// GoldenContent is what a golden image of the site carries: the site file,
// the CA certificate, the SSH user CA, principals and KRL, the host CA's
// known_hosts line, ztwizard's units, and a firewall with what every node
// shares (SSH from admin_cidrs and the mesh, WireGuard, public_tcp, ICMP)
// and no node's databases. No private key of any kind, no server
// certificate, no WireGuard interface: a node's identity comes from its
// seed. sec needs only the public parts and the mesh addresses.
func GoldenContent(site *steps.Site, sec *steps.Secrets) (*Content, error) {
	if len(site.Nodes) == 0 {
		return nil, fmt.Errorf("image: golden: the site has no nodes")
	}
	pub := &steps.Secrets{CACert: sec.CACert, SSHUserCA: sec.SSHUserCA, SSHHostCA: sec.SSHHostCA, KRL: sec.KRL, Addresses: sec.Addresses}
	name := goldenNodeName(site)
	pseudo := site.Clone()
	pseudo.Nodes = append(pseudo.Nodes, steps.Node{Name: name})
	siteYAML, err := site.Marshal()
	if err != nil {
		return nil, fmt.Errorf("image: golden: %w", err)
	}
	fw, err := steps.FirewallFor(pseudo, name, pub.Addresses, steps.WireGuardName)
	if err != nil {
		return nil, fmt.Errorf("image: golden: %w", err)
	}
	c := &Content{Site: site.Site, Hostname: GoldenHostname}
	c.Files = []steps.File{
		{Path: steps.SiteFilePath, Mode: 0o644, Content: siteYAML},
		{Path: steps.CACertPath, Mode: 0o644, Content: pub.CACert},
		{Path: steps.NftablesPath, Mode: 0o644, Content: []byte(fw.Script())},
	}
	sshFiles, err := steps.SSHFiles(pseudo, name, pub)
	if err != nil {
		return nil, fmt.Errorf("image: golden: %w", err)
	}
	known, err := steps.SSHFiles(site, site.Nodes[0].Name, pub)
	if err != nil {
		return nil, fmt.Errorf("image: golden: %w", err)
	}
	for _, f := range sshFiles {
		if f.Path == steps.SSHKnownHostsPath {
			i := slices.IndexFunc(known, func(k steps.File) bool { return k.Path == steps.SSHKnownHostsPath })
			f = known[i]
		}
		c.Files = append(c.Files, f)
	}
	unitFiles, units, err := steps.UnitFiles(pseudo, name)
	if err != nil {
		return nil, fmt.Errorf("image: golden: %w", err)
	}
	c.Files = append(c.Files, unitFiles...)
	for _, u := range units {
		if u.Enable {
			c.Enable = append(c.Enable, u.Name)
		}
	}
	hf, err := HostFiles(c.Hostname)
	if err != nil {
		return nil, err
	}
	c.Files = append(c.Files, hf...)
	return c, c.sort()
}

// goldenNodeName is a node name the site does not use, standing for any
// node in the building blocks a golden image shares with them.
func goldenNodeName(site *steps.Site) string {
	name := "golden"
	for i := 2; ; i++ {
		if _, taken := site.Node(name); !taken {
			return name
		}
		name = fmt.Sprintf("golden%d", i)
	}
}

// HostFiles are /etc/hostname and /etc/hosts for a host name.
func HostFiles(hostname string) ([]steps.File, error) {
	if err := steps.ValidName(hostname); err != nil {
		return nil, fmt.Errorf("image: host name: %w", err)
	}
	hosts, err := templates.Render("image-hosts.tmpl", struct{ Hostname string }{hostname})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return []steps.File{
		{Path: "/etc/hostname", Mode: 0o644, Content: []byte(hostname + "\n")},
		{Path: "/etc/hosts", Mode: 0o644, Content: hosts},
	}, nil
}

// NetworkFiles is the fixed-address network file for n, none for DHCP.
func NetworkFiles(n Network) ([]steps.File, error) {
	if n.Address == "" {
		if n.Gateway != "" || len(n.DNS) > 0 {
			return nil, fmt.Errorf("image: --gateway and --dns need --address")
		}
		return nil, nil
	}
	p, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return nil, fmt.Errorf("image: --address %q: want an address with its prefix length, like 192.168.1.100/24", n.Address)
	}
	if n.Gateway != "" {
		g, err := netip.ParseAddr(n.Gateway)
		if err != nil || g.Is4() != p.Addr().Is4() {
			return nil, fmt.Errorf("image: --gateway %q: not an address of the same family as %s", n.Gateway, p)
		}
	}
	for _, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return nil, fmt.Errorf("image: --dns %q: not an IP address", d)
		}
	}
	data, err := templates.Render("image-network-static.tmpl", n)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return []steps.File{{Path: StaticNetworkPath, Mode: 0o644, Content: data}}, nil
}

// sort orders the files by path and refuses two at one path or a path
// that is not clean and absolute.
func (c *Content) sort() error {
	slices.SortStableFunc(c.Files, func(a, b steps.File) int { return cmp.Compare(a.Path, b.Path) })
	for i, f := range c.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return fmt.Errorf("image: bad file path %q", f.Path)
		}
		if i > 0 && c.Files[i-1].Path == f.Path {
			return fmt.Errorf("image: two files at %s", f.Path)
		}
	}
	return nil
}

package steps

import (
	"io/fs"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps/nft"
)

// File is one file a node needs, where it lands on the node.
type File struct {
	Path    string      // absolute path on the node
	Mode    fs.FileMode // permission bits
	Owner   string      // user name; "" means root
	Group   string      // group name; "" means root
	Content []byte
}

// Unit is a systemd unit the plan installs or depends on.
type Unit struct {
	Name   string // "nginx.service", "ztwizard-crl.timer"
	Enable bool   // enable it so it starts at boot
	Reload bool   // reload it when its files change
	// Restart lists the files whose change a reload cannot apply (a
	// database's listen address): a change to one restarts the unit.
	Restart []string
	// Package is the Debian package that installs the unit, for units the
	// plan does not write itself: a host without it is told what to install.
	Package string
}

// Interface is the node's WireGuard interface.
type Interface struct {
	Name      string         // the link name
	Addresses []netip.Prefix // the node's mesh address, with the mesh network's prefix length
	Config    wgtypes.Config // key, listen port and peers, with ReplacePeers
	// Resolve holds the endpoints given as DNS names, by peer: building a
	// plan looks nothing up, so whoever applies it resolves these.
	Resolve map[wgtypes.Key]string
	// PeerNames are the peers' node names, from the "# NAME" comment that
	// opens each [Peer] of a wg-quick file (ParseWGQuick fills it).
	PeerNames map[wgtypes.Key]string
}

// KeyPair is a PEM certificate and its PEM private key.
type KeyPair struct {
	Cert []byte
	Key  []byte
}

// Secrets is what a plan needs from the state store. A missing private
// part (no WireGuardKey, no server key) is left for the node to make on
// first boot, as golden images need.
type Secrets struct {
	CACert        []byte                 // the X.509 CA certificate, PEM
	CRL           []byte                 // the current CRL, PEM
	Servers       map[string]KeyPair     // service name -> its server certificate and key
	SSHUserCA     []byte                 // the SSH user CA public key line
	SSHHostCA     []byte                 // the SSH host CA public key line
	KRL           []byte                 // the OpenSSH KRL
	HostCert      []byte                 // this node's SSH host certificate line, if signed
	WireGuardKey  *wgtypes.Key           // this node's WireGuard private key, if known
	WireGuardPubs map[string]wgtypes.Key // WireGuard public keys by node: at least the node's peers
	PresharedKeys map[string]wgtypes.Key // per link, keyed by LinkKey(a, b); optional
	Addresses     map[string]netip.Addr  // every node's mesh address
}

// Plan is everything one node needs, as plain data: its files, firewall,
// WireGuard interface and units. Building it is pure; targets (the live
// host, an image, an export folder) only consume it.
type Plan struct {
	Site      string
	Node      string
	Files     []File // sorted by path
	Firewall  *nft.Table
	WireGuard Interface
	Units     []Unit
}

package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
)

// FromSecrets takes node's share of a site's secrets: its own certificates
// and keys, the public keys of itself and its peers, the preshared keys of
// its own links, the mesh address of every node of site (the node's view,
// see steps.Site.ViewFor), and the CAs' public material.
// It reports whether it carries a private key.
func FromSecrets(site *steps.Site, node string, sec *steps.Secrets) (Secrets, bool) {
	out := Secrets{
		CRL:           string(sec.CRL),
		SSHUserCA:     string(sec.SSHUserCA),
		SSHHostCA:     string(sec.SSHHostCA),
		KRL:           sec.KRL,
		HostCert:      string(sec.HostCert),
		WireGuardPubs: map[string]string{},
		Addresses:     map[string]string{},
	}
	private := false
	if len(sec.Servers) > 0 {
		out.Servers = map[string]ServerPair{}
	}
	for name, kp := range sec.Servers {
		out.Servers[name] = ServerPair{Cert: string(kp.Cert), Key: string(kp.Key)}
		private = private || len(kp.Key) > 0
	}
	if sec.WireGuardKey != nil {
		out.WireGuardKey = sec.WireGuardKey.String()
		private = true
	}
	names := append([]string{node}, site.Links(node)...)
	for _, n := range names {
		if k, ok := sec.WireGuardPubs[n]; ok {
			out.WireGuardPubs[n] = k.String()
		}
		if n == node {
			continue
		}
		if psk, ok := sec.PresharedKeys[steps.LinkKey(node, n)]; ok {
			if out.PresharedKeys == nil {
				out.PresharedKeys = map[string]string{}
			}
			out.PresharedKeys[steps.LinkKey(node, n)] = psk.String()
		}
	}
	for _, n := range site.Nodes {
		a, ok := sec.Addresses[n.Name]
		if !ok {
			continue
		}
		out.Addresses[n.Name] = a.String()
	}
	return out, private
}

// secrets turns a bundle's secrets back into what a plan is built from.
func (s Secrets) secrets(caCert string) (*steps.Secrets, error) {
	if s.CACerts != "" {
		caCert = s.CACerts
	}
	sec := &steps.Secrets{
		CACert:        []byte(caCert),
		CRL:           []byte(s.CRL),
		SSHUserCA:     []byte(s.SSHUserCA),
		SSHHostCA:     []byte(s.SSHHostCA),
		KRL:           s.KRL,
		Servers:       map[string]steps.KeyPair{},
		WireGuardPubs: map[string]wgtypes.Key{},
		Addresses:     map[string]netip.Addr{},
	}
	if s.HostCert != "" {
		sec.HostCert = []byte(s.HostCert)
	}
	for name, sp := range s.Servers {
		kp := steps.KeyPair{Cert: []byte(sp.Cert)}
		if sp.Key != "" {
			kp.Key = []byte(sp.Key)
		}
		sec.Servers[name] = kp
	}
	if s.WireGuardKey != "" {
		k, err := wgtypes.ParseKey(s.WireGuardKey)
		if err != nil {
			return nil, fmt.Errorf("wireguard_key: %w", err)
		}
		sec.WireGuardKey = &k
	}
	for n, v := range s.WireGuardPubs {
		k, err := wgtypes.ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("wireguard_public_keys.%s: %w", n, err)
		}
		sec.WireGuardPubs[n] = k
	}
	for l, v := range s.PresharedKeys {
		k, err := wgtypes.ParseKey(v)
		if err != nil {
			return nil, fmt.Errorf("preshared_keys.%s: %w", l, err)
		}
		if sec.PresharedKeys == nil {
			sec.PresharedKeys = map[string]wgtypes.Key{}
		}
		sec.PresharedKeys[l] = k
	}
	for n, v := range s.Addresses {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("addresses.%s: %w", n, err)
		}
		sec.Addresses[n] = a
	}
	return sec, nil
}

// ParseSite reads the site file the bundle carries.
func (p *Payload) ParseSite() (*steps.Site, error) {
	site, err := steps.Parse([]byte(p.SiteFile), "bundle:site")
	if err != nil {
		return nil, refused("the site file in the bundle: %v", err)
	}
	if site.Site != p.Site {
		return nil, refused("the bundle names site %q, its site file %q", p.Site, site.Site)
	}
	if _, ok := site.Node(p.Node); !ok {
		return nil, refused("the bundle's site has no node %q", p.Node)
	}
	return site, nil
}

// Plan builds the node's plan from the bundle on the node whose root is
// root. The node's own private keys, when the bundle does not carry them
// (a node that made its own, see MakeRequest), are read from where they
// are used under root: the WireGuard key and each service's TLS key.
func (p *Payload) Plan(root string, now time.Time) (*steps.Plan, error) {
	site, err := p.ParseSite()
	if err != nil {
		return nil, err
	}
	sec, err := p.Secrets.secrets(p.CACert)
	if err != nil {
		return nil, refused("%v", err)
	}
	if sec.WireGuardKey == nil {
		k, err := readWireGuardKey(root)
		if err != nil {
			return nil, err
		}
		sec.WireGuardKey = k
	}
	for name, kp := range sec.Servers {
		if len(kp.Key) > 0 {
			continue
		}
		rel := filepath.Join(steps.TLSDir, name+".key")
		key, err := os.ReadFile(filepath.Join(root, rel))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("bundle: service %q: its key %s is missing on this node (it was made by `ztwizard node request`)", name, rel)
		}
		if err != nil {
			return nil, fmt.Errorf("bundle: service %q: %w", name, err)
		}
		kp.Key = key
		sec.Servers[name] = kp
	}
	plan, err := steps.BuildPlan(site, p.Node, sec, now)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	if p.Secrets.HostKey != "" {
		if plan.Files, err = withHostKey(plan.Files, p.Secrets.HostKey); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// readWireGuardKey reads the node's own WireGuard key under root.
func readWireGuardKey(root string) (*wgtypes.Key, error) {
	data, err := os.ReadFile(filepath.Join(root, steps.WireGuardKeyPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle: the WireGuard key %s is missing on this node (it was made by `ztwizard node request`)", steps.WireGuardKeyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("bundle: %s: not a WireGuard key", steps.WireGuardKeyPath)
	}
	return &k, nil
}

package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
)

// wgClient configures WireGuard devices; *wgctrl.Client fits.
type wgClient interface {
	Device(name string) (*wgtypes.Device, error)
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

// WGSnapshot is a WireGuard interface as it was before an apply.
type WGSnapshot struct {
	Name       string   `json:"name"`
	Existed    bool     `json:"existed"`
	PrivateKey string   `json:"private_key,omitempty"`
	ListenPort int      `json:"listen_port,omitempty"`
	Peers      []WGPeer `json:"peers,omitempty"`
	Addresses  []string `json:"addresses,omitempty"`
	DevicePID  int      `json:"device_pid,omitempty"` // the userspace device this apply started
	Done       bool     `json:"done"`
}

// WGPeer is one peer of a snapshot.
type WGPeer struct {
	PublicKey    string   `json:"public_key"`
	PresharedKey string   `json:"preshared_key,omitempty"`
	Endpoint     string   `json:"endpoint,omitempty"`
	Keepalive    int      `json:"keepalive,omitempty"`
	AllowedIPs   []string `json:"allowed_ips,omitempty"`
}

// wgState reads an interface's state: the device (nil when there is none)
// and its addresses.
func wgState(c wgClient, name string) (*WGSnapshot, error) {
	snap := &WGSnapshot{Name: name}
	dev, err := c.Device(name)
	if errors.Is(err, os.ErrNotExist) {
		return snap, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wireguard: read %s: %w", name, err)
	}
	snap.Existed = true
	var zero wgtypes.Key
	if dev.PrivateKey != zero {
		snap.PrivateKey = dev.PrivateKey.String()
	}
	snap.ListenPort = dev.ListenPort
	for _, p := range dev.Peers {
		wp := WGPeer{PublicKey: p.PublicKey.String(), Keepalive: int(p.PersistentKeepaliveInterval / time.Second)}
		if p.PresharedKey != zero {
			wp.PresharedKey = p.PresharedKey.String()
		}
		if p.Endpoint != nil {
			wp.Endpoint = p.Endpoint.String()
		}
		for _, a := range p.AllowedIPs {
			wp.AllowedIPs = append(wp.AllowedIPs, a.String())
		}
		slices.Sort(wp.AllowedIPs)
		snap.Peers = append(snap.Peers, wp)
	}
	slices.SortFunc(snap.Peers, func(a, b WGPeer) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	addrs, err := linkAddresses(name)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		snap.Addresses = append(snap.Addresses, a.String())
	}
	return snap, nil
}

// desired is the snapshot an interface has once the plan is applied, for
// comparing with the current one (so an unchanged interface is left alone).
func desired(iface steps.Interface, resolved map[wgtypes.Key]*net.UDPAddr) *WGSnapshot {
	cfg := iface.Config
	snap := &WGSnapshot{Name: iface.Name, Existed: true}
	if cfg.PrivateKey != nil {
		snap.PrivateKey = cfg.PrivateKey.String()
	}
	if cfg.ListenPort != nil {
		snap.ListenPort = *cfg.ListenPort
	}
	for _, p := range cfg.Peers {
		wp := WGPeer{PublicKey: p.PublicKey.String()}
		if p.PresharedKey != nil {
			wp.PresharedKey = p.PresharedKey.String()
		}
		if p.Endpoint != nil {
			wp.Endpoint = p.Endpoint.String()
		} else if a, ok := resolved[p.PublicKey]; ok {
			wp.Endpoint = a.String()
		}
		if p.PersistentKeepaliveInterval != nil {
			wp.Keepalive = int(*p.PersistentKeepaliveInterval / time.Second)
		}
		for _, a := range p.AllowedIPs {
			wp.AllowedIPs = append(wp.AllowedIPs, a.String())
		}
		slices.Sort(wp.AllowedIPs)
		snap.Peers = append(snap.Peers, wp)
	}
	slices.SortFunc(snap.Peers, func(a, b WGPeer) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	for _, a := range iface.Addresses {
		snap.Addresses = append(snap.Addresses, a.String())
	}
	slices.Sort(snap.Addresses)
	return snap
}

// same tells whether two snapshots describe the same interface.
func (s *WGSnapshot) same(o *WGSnapshot) bool {
	if s.Existed != o.Existed || s.PrivateKey != o.PrivateKey || s.ListenPort != o.ListenPort || len(s.Peers) != len(o.Peers) {
		return false
	}
	for i := range s.Peers {
		a, b := s.Peers[i], o.Peers[i]
		if a.PublicKey != b.PublicKey || a.PresharedKey != b.PresharedKey || a.Endpoint != b.Endpoint ||
			a.Keepalive != b.Keepalive || !slices.Equal(a.AllowedIPs, b.AllowedIPs) {
			return false
		}
	}
	x, y := slices.Clone(s.Addresses), slices.Clone(o.Addresses)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// config turns a snapshot back into a device configuration.
func (s *WGSnapshot) config() (wgtypes.Config, error) {
	cfg := wgtypes.Config{ReplacePeers: true}
	if s.PrivateKey != "" {
		k, err := wgtypes.ParseKey(s.PrivateKey)
		if err != nil {
			return cfg, err
		}
		cfg.PrivateKey = &k
	}
	port := s.ListenPort
	cfg.ListenPort = &port
	for _, p := range s.Peers {
		pub, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return cfg, err
		}
		pc := wgtypes.PeerConfig{PublicKey: pub, ReplaceAllowedIPs: true}
		if p.PresharedKey != "" {
			psk, err := wgtypes.ParseKey(p.PresharedKey)
			if err != nil {
				return cfg, err
			}
			pc.PresharedKey = &psk
		}
		if p.Endpoint != "" {
			ap, err := netip.ParseAddrPort(p.Endpoint)
			if err != nil {
				return cfg, err
			}
			pc.Endpoint = net.UDPAddrFromAddrPort(ap)
		}
		ka := time.Duration(p.Keepalive) * time.Second
		pc.PersistentKeepaliveInterval = &ka
		for _, a := range p.AllowedIPs {
			_, n, err := net.ParseCIDR(a)
			if err != nil {
				return cfg, err
			}
			pc.AllowedIPs = append(pc.AllowedIPs, *n)
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	return cfg, nil
}

// linkAddresses lists the addresses on a link.
func linkAddresses(name string) ([]netip.Prefix, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("wireguard: link %s: %w", name, err)
	}
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("wireguard: addresses of %s: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Is6() && ip.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// setAddresses makes want the link's only addresses (link-local ones
// aside), and brings the link up.
func setAddresses(name string, want []string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("wireguard: link %s: %w", name, err)
	}
	have, err := linkAddresses(name)
	if err != nil {
		return err
	}
	for _, h := range have {
		if slices.Contains(want, h.String()) {
			continue
		}
		a, _ := netlink.ParseAddr(h.String())
		if err := netlink.AddrDel(link, a); err != nil {
			return fmt.Errorf("wireguard: remove %s from %s: %w", h, name, err)
		}
	}
	for _, w := range want {
		a, err := netlink.ParseAddr(w)
		if err != nil {
			return fmt.Errorf("wireguard: address %s: %w", w, err)
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("wireguard: add %s to %s: %w", w, name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("wireguard: up %s: %w", name, err)
	}
	return nil
}

// createKernelLink makes a kernel WireGuard link. errNoKernelWG tells the
// kernel has no WireGuard.
func createKernelLink(name string) error {
	err := netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EOPNOTSUPP) || strings.Contains(err.Error(), "not supported") {
		return errNoKernelWG
	}
	return fmt.Errorf("wireguard: create %s: %w", name, err)
}

var errNoKernelWG = errors.New("the kernel has no WireGuard")

// deleteLink removes a link if it is there.
func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("wireguard: link %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("wireguard: delete %s: %w", name, err)
	}
	return nil
}

// ConfigureInterface configures a running WireGuard device as iface says
// (endpoints given as DNS names resolved now) and sets its addresses.
func ConfigureInterface(c wgClient, iface steps.Interface) error {
	resolved, err := resolve(context.Background(), iface.Resolve)
	if err != nil {
		return err
	}
	cfg := iface.Config
	cfg.Peers = slices.Clone(cfg.Peers)
	for i, p := range cfg.Peers {
		if p.Endpoint == nil {
			cfg.Peers[i].Endpoint = resolved[p.PublicKey]
		}
	}
	if err := c.ConfigureDevice(iface.Name, cfg); err != nil {
		return fmt.Errorf("wireguard: configure %s: %w", iface.Name, err)
	}
	var addrs []string
	for _, a := range iface.Addresses {
		addrs = append(addrs, a.String())
	}
	return setAddresses(iface.Name, addrs)
}

package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
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
	if gone(err) {
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
		snap.Peers = append(snap.Peers, wantPeer(p, resolved))
	}
	slices.SortFunc(snap.Peers, func(a, b WGPeer) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	for _, a := range iface.Addresses {
		snap.Addresses = append(snap.Addresses, a.String())
	}
	slices.Sort(snap.Addresses)
	return snap
}

// wantPeer is the snapshot of peer p once configured, its endpoint looked
// up in resolved when given as a name.
func wantPeer(p wgtypes.PeerConfig, resolved map[wgtypes.Key]*net.UDPAddr) WGPeer {
	wp := WGPeer{PublicKey: p.PublicKey.String()}
	if p.PresharedKey != nil && *p.PresharedKey != (wgtypes.Key{}) {
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
	return wp
}

// delta is the configuration that takes a device from now to cfg (a
// whole configuration, endpoints filled in): its key and port where they
// change, the peers that are new or differ (each set whole: allowed IPs
// replaced, preshared key and keepalive given even when none), and the
// removal of the peers cfg no longer has. Peers already as cfg wants them
// are left out: a userspace device computes a Diffie-Hellman for every
// peer it adds, so replacing all 1,000 peers for one change costs a
// hundred milliseconds or more, and drops every peer's session.
func delta(cfg wgtypes.Config, now *WGSnapshot) wgtypes.Config {
	out := wgtypes.Config{FirewallMark: cfg.FirewallMark}
	if cfg.PrivateKey != nil && cfg.PrivateKey.String() != now.PrivateKey {
		out.PrivateKey = cfg.PrivateKey
	}
	if cfg.ListenPort != nil && *cfg.ListenPort != now.ListenPort {
		out.ListenPort = cfg.ListenPort
	}
	have := make(map[string]WGPeer, len(now.Peers))
	for _, p := range now.Peers {
		have[p.PublicKey] = p
	}
	wanted := make(map[string]bool, len(cfg.Peers))
	var changed []wgtypes.PeerConfig
	for _, p := range cfg.Peers {
		key := p.PublicKey.String()
		wanted[key] = true
		if h, ok := have[key]; ok && samePeer(h, wantPeer(p, nil)) {
			continue
		}
		p.ReplaceAllowedIPs = true
		if p.PresharedKey == nil {
			p.PresharedKey = &wgtypes.Key{} // removes one the device has
		}
		if p.PersistentKeepaliveInterval == nil {
			p.PersistentKeepaliveInterval = new(time.Duration)
		}
		changed = append(changed, p)
	}
	// Removals first: an address a removed peer had may move to a new one.
	for _, h := range now.Peers {
		if wanted[h.PublicKey] {
			continue
		}
		if k, err := wgtypes.ParseKey(h.PublicKey); err == nil {
			out.Peers = append(out.Peers, wgtypes.PeerConfig{PublicKey: k, Remove: true})
		}
	}
	out.Peers = append(out.Peers, changed...)
	return out
}

// peerChanges counts the peers that delta sends to take a device from now
// to want: added or changed, and removed.
func peerChanges(now, want *WGSnapshot) (set, removed int) {
	have := make(map[string]WGPeer, len(now.Peers))
	for _, p := range now.Peers {
		have[p.PublicKey] = p
	}
	for _, p := range want.Peers {
		if h, ok := have[p.PublicKey]; !ok || !samePeer(h, p) {
			set++
		}
		delete(have, p.PublicKey)
	}
	return set, len(have)
}

// same tells whether the interface s is already as o, the snapshot of the
// plan, wants it.
func (s *WGSnapshot) same(o *WGSnapshot) bool {
	if s.Existed != o.Existed || s.PrivateKey != o.PrivateKey || s.ListenPort != o.ListenPort || len(s.Peers) != len(o.Peers) {
		return false
	}
	for i := range s.Peers {
		if s.Peers[i].PublicKey != o.Peers[i].PublicKey || !samePeer(s.Peers[i], o.Peers[i]) {
			return false
		}
	}
	return slices.Equal(sorted(s.Addresses), sorted(o.Addresses))
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

// gone tells whether a device lookup failed because there is no device:
// none at all, or the socket of a userspace device that died without
// removing it (the next device there replaces it).
func gone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED)
}

// waitGone waits until the device name no longer answers, for at most
// timeout: a userspace device stops a moment after its link is deleted.
func waitGone(c wgClient, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := c.Device(name)
		if gone(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wireguard: %s still answers %s after its link was deleted", name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isDevice tells whether pid runs the userspace WireGuard device name (a
// pid from a journal may since have gone to another process).
func isDevice(pid int, name string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	for i := 0; i+2 < len(args); i++ {
		if args[i] == "wg" && args[i+1] == "device" && args[i+2] == name {
			return true
		}
	}
	return false
}

// DeviceUnit is the systemd unit that runs the userspace device name.
func DeviceUnit(name string) string { return "ztwizard-wg@" + name + ".service" }

// stopDevices stops the userspace devices called name that run in this
// network namespace (known among them, if it still runs one): SIGTERM,
// then SIGKILL for one still there after timeout. An apply killed while it
// started its device leaves one that its journal does not name.
func stopDevices(name string, known int, timeout time.Duration) error {
	pids := devicePIDs(name)
	if known > 0 && isDevice(known, name) && !slices.Contains(pids, known) {
		pids = append(pids, known)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range pids {
		for isDevice(pid, name) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, pid := range pids {
		for i := 0; isDevice(pid, name) && i < 100; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if isDevice(pid, name) {
			return fmt.Errorf("wireguard: the userspace device %s (pid %d) does not stop", name, pid)
		}
	}
	return nil
}

// devicePIDs lists the processes that run the userspace device name in
// this thread's network namespace.
func devicePIDs(name string) []int {
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !isDevice(pid, name) {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ns == self {
			out = append(out, pid)
		}
	}
	return out
}

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
	return configure(c, iface, resolved, nil)
}

// UpAtBoot brings the interface up as a node boots, before the network is
// online: where the kernel has WireGuard it makes the link with netlink (if
// missing), configures it with wgctrl and sets its addresses, and returns
// true; where it has none it returns false and does nothing. Endpoints
// given as names that do not resolve yet are left out (logged): the peer's
// own handshake, or the next apply, fills them in.
func UpAtBoot(ctx context.Context, iface steps.Interface, logf func(string, ...any)) (bool, error) {
	if _, err := netlink.LinkByName(iface.Name); err != nil {
		err := createKernelLink(iface.Name)
		if errors.Is(err, errNoKernelWG) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	c, err := wgctrl.New()
	if err != nil {
		return true, fmt.Errorf("wireguard: %w", err)
	}
	defer c.Close()
	return true, ConfigureAtBoot(ctx, c, iface, logf)
}

// ConfigureAtBoot configures a device as ConfigureInterface does, but an
// endpoint name that does not resolve within a few seconds leaves its peer
// without an endpoint instead of failing: at boot the network may not be
// up yet.
func ConfigureAtBoot(ctx context.Context, c wgClient, iface steps.Interface, logf func(string, ...any)) error {
	resolved := map[wgtypes.Key]*net.UDPAddr{}
	for k, name := range iface.Resolve {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		one, err := resolve(rctx, map[wgtypes.Key]string{k: name})
		cancel()
		if err != nil {
			logf("wireguard: %s: peer %s left without an endpoint for now: %v", iface.Name, name, err)
			continue
		}
		resolved[k] = one[k]
	}
	return configure(c, iface, resolved, nil)
}

// configure sends iface's configuration to its device, with the endpoints
// given as DNS names filled in from resolved, and sets its addresses. With
// now, the device's state (see wgState) when it exists, it sends only what
// differs (see delta).
func configure(c wgClient, iface steps.Interface, resolved map[wgtypes.Key]*net.UDPAddr, now *WGSnapshot) error {
	cfg := iface.Config
	cfg.Peers = slices.Clone(cfg.Peers)
	for i, p := range cfg.Peers {
		if p.Endpoint == nil {
			cfg.Peers[i].Endpoint = resolved[p.PublicKey]
		}
	}
	if now != nil && now.Existed {
		cfg = delta(cfg, now)
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

package steps

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// ParseWGQuick reads a wg-quick file as ztwizard writes it back into an
// Interface, for the userspace device that configures itself at boot. The
// private key is read through readKey from the path PostUp names. Endpoints
// given as DNS names go into Resolve.
func ParseWGQuick(name string, data []byte, readKey func(path string) ([]byte, error)) (Interface, error) {
	iface := Interface{Name: name}
	var peer *wgtypes.PeerConfig
	section, comment := "", ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if c, ok := strings.CutPrefix(line, "#"); ok && section == "peer" && comment == "" && peer.PublicKey == (wgtypes.Key{}) {
			comment = strings.TrimSpace(c)
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.ToLower(strings.Trim(line, "[]"))
			if section == "peer" {
				iface.Config.Peers = append(iface.Config.Peers, wgtypes.PeerConfig{ReplaceAllowedIPs: true})
				peer = &iface.Config.Peers[len(iface.Config.Peers)-1]
				comment = ""
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return Interface{}, fmt.Errorf("wg-quick %s: line %d: want key = value", name, n)
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		if err := setQuick(&iface, peer, section, key, value, readKey); err != nil {
			return Interface{}, fmt.Errorf("wg-quick %s: line %d: %s: %w", name, n, key, err)
		}
		if section == "peer" && key == "publickey" && comment != "" {
			if iface.PeerNames == nil {
				iface.PeerNames = map[wgtypes.Key]string{}
			}
			iface.PeerNames[peer.PublicKey] = comment
		}
	}
	iface.Config.ReplacePeers = true
	return iface, sc.Err()
}

func setQuick(iface *Interface, peer *wgtypes.PeerConfig, section, key, value string, readKey func(string) ([]byte, error)) error {
	switch section + "." + key {
	case "interface.address":
		for _, a := range strings.Split(value, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(a))
			if err != nil {
				return err
			}
			iface.Addresses = append(iface.Addresses, p)
		}
	case "interface.listenport":
		port, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		iface.Config.ListenPort = &port
	case "interface.privatekey":
		k, err := wgtypes.ParseKey(value)
		if err != nil {
			return err
		}
		iface.Config.PrivateKey = &k
	case "interface.postup":
		path, ok := strings.CutPrefix(value, "wg set %i private-key ")
		if !ok {
			return fmt.Errorf("only %q is understood", "wg set %i private-key PATH")
		}
		data, err := readKey(strings.TrimSpace(path))
		if err != nil {
			return err
		}
		k, err := wgtypes.ParseKey(strings.TrimSpace(string(data)))
		if err != nil {
			return err
		}
		iface.Config.PrivateKey = &k
	case "peer.publickey", "peer.presharedkey":
		k, err := wgtypes.ParseKey(value)
		if err != nil {
			return err
		}
		if key == "publickey" {
			peer.PublicKey = k
		} else {
			peer.PresharedKey = &k
		}
	case "peer.allowedips":
		for _, a := range strings.Split(value, ",") {
			_, n, err := net.ParseCIDR(strings.TrimSpace(a))
			if err != nil {
				return err
			}
			peer.AllowedIPs = append(peer.AllowedIPs, *n)
		}
	case "peer.endpoint":
		if ap, err := netip.ParseAddrPort(value); err == nil {
			peer.Endpoint = net.UDPAddrFromAddrPort(ap)
			return nil
		}
		if err := ValidEndpoint(value); err != nil {
			return err
		}
		if iface.Resolve == nil {
			iface.Resolve = map[wgtypes.Key]string{}
		}
		iface.Resolve[peer.PublicKey] = value
	case "peer.persistentkeepalive":
		secs, err := strconv.Atoi(value)
		if err != nil {
			return err
		}
		d := time.Duration(secs) * time.Second
		peer.PersistentKeepaliveInterval = &d
	default:
		return fmt.Errorf("not understood in [%s]", section)
	}
	return nil
}

// WGQuickStandalone is a node's wg-quick file with its private key inlined
// instead of referenced, for a device ztwizard does not manage (a phone, a
// laptop). It is a secret.
func WGQuickStandalone(site *Site, node string, sec *Secrets) ([]byte, error) {
	if sec == nil || sec.WireGuardKey == nil {
		return nil, fmt.Errorf("wireguard: node %q: no private key to export", node)
	}
	_, files, err := WireGuardFor(site, node, sec)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if f.Path == WireGuardConfDir+"/"+WireGuardName+".conf" {
			line := "PostUp = wg set %i private-key " + WireGuardKeyPath
			out := bytes.Replace(f.Content, []byte(line), []byte("PrivateKey = "+sec.WireGuardKey.String()), 1)
			if bytes.Equal(out, f.Content) {
				return nil, fmt.Errorf("wireguard: node %q: the file has no private-key reference", node)
			}
			return bytes.Replace(out, []byte("# The private key stays in its own file and is set by PostUp."),
				[]byte("# The private key is inlined: keep this file secret."), 1), nil
		}
	}
	return nil, fmt.Errorf("wireguard: node %q: no wg-quick file", node)
}

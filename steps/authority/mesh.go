package authority

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps/state"
)

// MeshFile records every node's mesh address once given, so that a node
// keeps its address however the site's node list is reordered.
const MeshFile = "wireguard/addresses.json"

// RecordedAddresses reads the record of mesh addresses in the state folder
// dir, as MeshAddresses keeps it, without creating or changing anything:
// an empty record when the folder or the record is not there yet. The
// site's Addresses given this record are the addresses render and apply
// use, so whatever shows addresses asks it too.
func RecordedAddresses(dir string) (map[string]netip.Addr, error) {
	prev := map[string]netip.Addr{}
	if dir == "" {
		return prev, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return prev, nil
	}
	store, err := state.OpenDryRun(dir)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	data, err := store.ReadFile(MeshFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return prev, nil
	case err != nil:
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := json.Unmarshal(data, &prev); err != nil {
		return nil, fmt.Errorf("authority: %s: %w", MeshFile, err)
	}
	return prev, nil
}

// MeshAddresses allocates the nodes' mesh addresses from the site and the
// record of earlier allocations, and updates the record.
func (a *Authority) MeshAddresses() (map[string]netip.Addr, error) {
	prev := map[string]netip.Addr{}
	data, err := a.Store.ReadFile(MeshFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("authority: %w", err)
	default:
		if err := json.Unmarshal(data, &prev); err != nil {
			return nil, fmt.Errorf("authority: %s: %w", MeshFile, err)
		}
	}
	addrs, err := a.Site.Addresses(prev)
	if err != nil {
		return nil, badInput("%v", err)
	}
	// Keep the addresses of nodes no longer in the site: a node that
	// comes back gets its old address if it is still free.
	merged := make(map[string]netip.Addr, len(prev)+len(addrs))
	for n, ad := range prev {
		merged[n] = ad
	}
	for n, ad := range addrs {
		merged[n] = ad
	}
	if data != nil && maps.Equal(merged, prev) {
		return addrs, nil // the record holds them all already
	}
	out, err := json.MarshalIndent(merged, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", MeshFile, err)
	}
	if out = append(out, '\n'); string(out) != string(data) {
		if err := a.write(MeshFile, out, privateMode); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// WireGuardKey loads a node's WireGuard private key, making it on first
// use. The key file holds the key in base64 as `wg genkey` writes it (0600);
// the public key sits beside it.
func (a *Authority) WireGuardKey(node string) (wgtypes.Key, error) {
	if err := CheckNode(a.Site, node); err != nil {
		return wgtypes.Key{}, err
	}
	rel := path.Join("wireguard", node+".key")
	data, err := a.Store.ReadFile(rel)
	if err == nil {
		k, err := wgtypes.ParseKey(strings.TrimSpace(string(data)))
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("authority: %s: %w", rel, err)
		}
		return k, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return wgtypes.Key{}, fmt.Errorf("authority: %w", err)
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("authority: wireguard key for %s: %w", node, err)
	}
	pub := k.PublicKey()
	if err := a.audit("create", "wireguard", node, "", time.Time{}, "public key "+pub.String()); err != nil {
		return wgtypes.Key{}, err
	}
	if err := a.write(rel, []byte(k.String()+"\n"), privateMode); err != nil {
		return wgtypes.Key{}, err
	}
	if err := a.write(path.Join("wireguard", node+".pub"), []byte(pub.String()+"\n"), publicMode); err != nil {
		return wgtypes.Key{}, err
	}
	return k, nil
}

// WireGuardPublicKey returns a node's WireGuard public key from the file
// beside its private key, making the pair on first use. It reads the private
// key only when the public key file is missing.
func (a *Authority) WireGuardPublicKey(node string) (wgtypes.Key, error) {
	rel := path.Join("wireguard", node+".pub")
	data, err := a.Store.ReadFile(rel)
	switch {
	case err == nil:
		k, err := wgtypes.ParseKey(strings.TrimSpace(string(data)))
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("authority: %s: %w", rel, err)
		}
		return k, nil
	case !errors.Is(err, os.ErrNotExist):
		return wgtypes.Key{}, fmt.Errorf("authority: %w", err)
	}
	k, err := a.WireGuardKey(node)
	if err != nil {
		return wgtypes.Key{}, err
	}
	return k.PublicKey(), nil
}

package authority

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// TestSecretsPeersPublicKeys: the plan's peers' public keys are each
// peer's key, made when missing, read as the key file is now (a key changed
// on disk is the key used), and the imported request's key for a node
// that holds its own keys.
func TestSecretsPeersPublicKeys(t *testing.T) {
	a, _ := newFleetAuthority(t, fleetSite(t, "admin.example.com"))
	const node = "db"
	links := a.Site.Links(node)
	if len(links) < 2 {
		t.Fatalf("%s has %d peers, the test wants two", node, len(links))
	}
	sec, err := a.Secrets(node)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range append([]string{node}, links...) {
		k, err := a.WireGuardKey(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := sec.WireGuardPubs[n]; got != k.PublicKey() {
			t.Errorf("%s's public key in the plan %s, want %s", n, got, k.PublicKey())
		}
	}
	// A key changed on disk (in place, as an editor or cp writes) is read.
	other, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	peer := links[0]
	if err := os.WriteFile(filepath.Join(a.Store.Dir(), "wireguard", peer+".pub"), []byte(other.PublicKey().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A missing public key is made again from the private key.
	second := links[1]
	if err := os.Remove(filepath.Join(a.Store.Dir(), "wireguard", second+".pub")); err != nil {
		t.Fatal(err)
	}
	sec, err = a.Secrets(node)
	if err != nil {
		t.Fatal(err)
	}
	if got := sec.WireGuardPubs[peer]; got != other.PublicKey() {
		t.Errorf("after %s's key changed the plan has %s, want %s", peer, got, other.PublicKey())
	}
	k, err := a.WireGuardKey(second)
	if err != nil {
		t.Fatal(err)
	}
	if got := sec.WireGuardPubs[second]; got != k.PublicKey() {
		t.Errorf("%s without its .pub: %s, want %s", second, got, k.PublicKey())
	}
	// A bad key file is an error naming it.
	if err := os.WriteFile(filepath.Join(a.Store.Dir(), "wireguard", peer+".pub"), []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Secrets(node); err == nil || !strings.Contains(err.Error(), "wireguard/"+peer+".pub") {
		t.Fatalf("a bad public key file: %v, want an error naming it", err)
	}
	os.Remove(filepath.Join(a.Store.Dir(), "wireguard", peer+".pub"))

	// A peer that imported a request: its requested key.
	_, req := request(t, a, peer)
	if sec, err = a.Secrets(node); err != nil {
		t.Fatal(err)
	}
	if got := sec.WireGuardPubs[peer].String(); got != req.WireGuardPublicKey {
		t.Errorf("%s imported a request: %s, want its key %s", peer, got, req.WireGuardPublicKey)
	}
}

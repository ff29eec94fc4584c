package authority

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
)

func TestMeshAddressesSurviveInsertion(t *testing.T) {
	a, _ := newAuthority(t, "")
	a.Site.Nodes[0].Address, a.Site.Nodes[1].Address = "", ""
	first, err := a.MeshAddresses()
	if err != nil {
		t.Fatal(err)
	}
	if first["db"].String() != "10.100.0.1" || first["web"].String() != "10.100.0.2" {
		t.Fatalf("first allocation %v", first)
	}
	// A node inserted in front would take .1 without the record.
	a.Site.Nodes = append([]steps.Node{{Name: "cache", Endpoint: "192.168.1.9:51820"}}, a.Site.Nodes...)
	if fresh, _ := a.Site.Addresses(nil); fresh["cache"].String() != "10.100.0.1" {
		t.Fatalf("test premise: without history cache gets %s", fresh["cache"])
	}
	again, err := a.MeshAddresses()
	if err != nil {
		t.Fatal(err)
	}
	if again["db"] != first["db"] || again["web"] != first["web"] || again["cache"].String() != "10.100.0.3" {
		t.Fatalf("after insertion %v, want db and web unchanged and cache on .3", again)
	}
	if mode(t, a.Store.Path(MeshFile)) != 0o600 {
		t.Fatalf("%s not 0600", MeshFile)
	}
}

func TestWireGuardKey(t *testing.T) {
	a, _ := newAuthority(t, "")
	k, err := a.WireGuardKey("db")
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.WireGuardKey("db")
	if err != nil || again != k {
		t.Fatalf("second call must load the same key: %v", err)
	}
	if mode(t, a.Store.Path("wireguard/db.key")) != 0o600 || mode(t, a.Store.Path("wireguard")) != 0o700 {
		t.Fatal("wireguard key or folder has the wrong mode")
	}
	if _, err := a.WireGuardKey("dbb"); !errors.Is(err, ErrInput) {
		t.Fatalf("unknown node: %v", err)
	}
	// wg derives the same public key from the stored private key.
	wg, err := exec.LookPath("wg")
	if err != nil {
		t.Fatalf("wg (wireguard-tools) is required: %v", err)
	}
	priv, _ := os.ReadFile(a.Store.Path("wireguard/db.key"))
	cmd := exec.Command(wg, "pubkey")
	cmd.Stdin = strings.NewReader(string(priv))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(a.Store.Path("wireguard/db.pub"))
	if strings.TrimSpace(string(out)) != strings.TrimSpace(string(pub)) || string(pub) != k.PublicKey().String()+"\n" {
		t.Fatalf("wg pubkey %q, stored %q", out, pub)
	}
}

// TestSecretsWireGuardOnlyPeers: a node's secrets make and hold WireGuard
// keys for the node and its peers only, and take the peers' public keys
// from their .pub files (which a node that made its own key provides)
// rather than from private keys.
func TestSecretsWireGuardOnlyPeers(t *testing.T) {
	a, _ := newAuthority(t, "")
	a.Site.Nodes = append(a.Site.Nodes, steps.Node{Name: "lonely", Endpoint: "192.168.1.9:51820"})
	sec, err := a.Secrets("db")
	if err != nil {
		t.Fatal(err)
	}
	if len(sec.WireGuardPubs) != 2 || sec.WireGuardKey == nil || sec.WireGuardPubs["db"] != sec.WireGuardKey.PublicKey() {
		t.Fatalf("public keys %v, want db's own and its peer web's", sec.WireGuardPubs)
	}
	if ok, _ := a.Store.Exists("wireguard/lonely.key"); ok {
		t.Fatal("a key was made for a node that is not db's peer")
	}
	// web's key pair made elsewhere: only its public key is in the store.
	other, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Store.Remove("wireguard/web.key"); err != nil {
		t.Fatal(err)
	}
	if err := a.Store.WriteFile("wireguard/web.pub", []byte(other.PublicKey().String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sec, err = a.Secrets("db")
	if err != nil {
		t.Fatal(err)
	}
	if sec.WireGuardPubs["web"] != other.PublicKey() {
		t.Fatalf("web's public key %s, want the one in web.pub %s", sec.WireGuardPubs["web"], other.PublicKey())
	}
	if ok, _ := a.Store.Exists("wireguard/web.key"); ok {
		t.Fatal("a private key was made for web although its public key is known")
	}
}

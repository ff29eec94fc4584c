package steps

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"golang.org/x/tools/txtar"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
)

// goldenNow is the fixed clock of the golden plans.
var goldenNow = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func seedKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("ztwizard test key: " + label))
	return ed25519.NewKeyFromSeed(seed[:])
}

// fixedSecrets makes secrets that are the same on every run: Ed25519 keys
// from fixed seeds (Ed25519 signatures are deterministic), fixed serials
// and the fixed clock.
func fixedSecrets(t testing.TB, site *Site, node string) *Secrets {
	t.Helper()
	now := goldenNow
	ca, err := pki.NewRoot(pki.Subject{CommonName: site.CA.Subject.CommonName, Organization: site.CA.Subject.Organization},
		seedKey("ca"), site.CA.Validity.D(), now, big.NewInt(1))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := ca.CRL(nil, big.NewInt(1), now, site.CA.CRLValidity.D())
	if err != nil {
		t.Fatal(err)
	}
	sec := &Secrets{CACert: pki.EncodeCertPEM(ca.Cert), CRL: pki.EncodeCRLPEM(crl), Servers: map[string]KeyPair{},
		WireGuardPubs: map[string]wgtypes.Key{}}
	for i, s := range site.Services {
		if s.Node != node {
			continue
		}
		key := seedKey("server " + s.Name)
		cert, err := ca.IssueServer(key.Public(), s.ServerName, []string{s.ServerName}, nil, site.CA.CertValidity.D(), now, big.NewInt(int64(100+i)))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodeKeyPEM(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		sec.Servers[s.Name] = KeyPair{Cert: pki.EncodeCertPEM(cert), Key: keyPEM}
	}
	for _, label := range []string{"ssh user ca", "ssh host ca"} {
		pub, err := ssh.NewPublicKey(seedKey(label).Public())
		if err != nil {
			t.Fatal(err)
		}
		line := []byte(sshca.PublicKeyLine(pub, site.Site+" "+label))
		if label == "ssh user ca" {
			sec.SSHUserCA = line
		} else {
			sec.SSHHostCA = line
		}
	}
	sec.KRL = (&sshca.KRL{Version: 1, Generated: now, Comment: site.Site}).Marshal()
	for _, n := range site.Nodes {
		k := wgtypes.Key(sha256.Sum256([]byte("wireguard " + n.Name)))
		sec.WireGuardPubs[n.Name] = k.PublicKey()
		if n.Name == node {
			sec.WireGuardKey = &k
		}
	}
	if sec.Addresses, err = site.Addresses(nil); err != nil {
		t.Fatal(err)
	}
	return sec
}

// planArchive renders a plan as txtar sections: each file, then the units
// and the WireGuard interface as the applier would configure it.
func planArchive(p *Plan) []txtar.File {
	var out []txtar.File
	for _, f := range p.Files {
		name := fmt.Sprintf("%s%s (%04o %s:%s)", p.Node, f.Path, f.Mode, or(f.Owner, "root"), or(f.Group, "root"))
		data := f.Content
		if !utf8.Valid(data) || bytes.ContainsRune(data, 0) {
			enc := base64.StdEncoding.EncodeToString(data)
			var b strings.Builder
			b.WriteString("(binary, base64)\n")
			for len(enc) > 76 {
				b.WriteString(enc[:76] + "\n")
				enc = enc[76:]
			}
			b.WriteString(enc + "\n")
			data = []byte(b.String())
		}
		out = append(out, txtar.File{Name: name, Data: data})
	}
	var b strings.Builder
	for _, u := range p.Units {
		fmt.Fprintf(&b, "unit %s enable=%v reload=%v\n", u.Name, u.Enable, u.Reload)
	}
	fmt.Fprintf(&b, "wireguard %s addresses %v listen %d replace-peers %v\n", p.WireGuard.Name, p.WireGuard.Addresses,
		deref(p.WireGuard.Config.ListenPort), p.WireGuard.Config.ReplacePeers)
	for _, peer := range p.WireGuard.Config.Peers {
		var allowed []string
		for _, a := range peer.AllowedIPs {
			allowed = append(allowed, a.String())
		}
		fmt.Fprintf(&b, "  peer %s allowed %v endpoint %v keepalive %v psk %v\n", peer.PublicKey, allowed,
			peer.Endpoint, derefD(peer.PersistentKeepaliveInterval), peer.PresharedKey != nil)
	}
	fmt.Fprintf(&b, "firewall rules %d\n", p.Firewall.RuleCount())
	out = append(out, txtar.File{Name: p.Node + " plan", Data: []byte(b.String())})
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func derefD(p *time.Duration) time.Duration {
	if p == nil {
		return 0
	}
	return *p
}

// TestGoldenPlans compares every node's plan of the example site and of the
// 50-node site with testdata/golden/*.txtar; -update rewrites them.
func TestGoldenPlans(t *testing.T) {
	for _, tc := range []struct{ name, site string }{
		{"example", "example.yaml"},
		{"fifty", "../testdata/sites/fifty.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site, err := Load(tc.site)
			if err != nil {
				t.Fatal(err)
			}
			ar := &txtar.Archive{Comment: []byte(fmt.Sprintf("Golden plans of %s, every node, fixed keys and clock.\nRefresh: go test ./steps -run TestGoldenPlans -update\n", tc.site))}
			for _, n := range site.Nodes {
				p, err := BuildPlan(site, n.Name, fixedSecrets(t, site, n.Name), goldenNow)
				if err != nil {
					t.Fatal(err)
				}
				again, err := BuildPlan(site, n.Name, fixedSecrets(t, site, n.Name), goldenNow)
				if err != nil {
					t.Fatal(err)
				}
				a, b := txtar.Format(&txtar.Archive{Files: planArchive(p)}), txtar.Format(&txtar.Archive{Files: planArchive(again)})
				if !bytes.Equal(a, b) {
					t.Fatalf("node %s: two builds from the same inputs differ", n.Name)
				}
				ar.Files = append(ar.Files, planArchive(p)...)
			}
			got := txtar.Format(ar)
			golden := filepath.Join("..", "testdata", "golden", tc.name+".txtar")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("plans differ from %s; run go test ./steps -run TestGoldenPlans -update and review the diff", golden)
			}
		})
	}
}

func TestBuildPlanRefusesDeadSecrets(t *testing.T) {
	site := Example()
	for _, tc := range []struct {
		name string
		now  time.Time
		want string
	}{
		{"crl lapsed", goldenNow.Add(site.CA.CRLValidity.D() + time.Minute), "the CRL lapsed"},
		{"server certificate expired", goldenNow.Add(site.CA.CertValidity.D() + time.Minute), `service "api": its certificate expired`},
		{"unknown node", goldenNow, `unknown node "wbe" (did you mean "web"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := "web"
			if tc.name == "unknown node" {
				node = "wbe"
			}
			_, err := BuildPlan(site, node, fixedSecrets(t, site, "web"), tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := BuildPlan(site, "web", fixedSecrets(t, site, "web"), goldenNow.Add(time.Hour)); err != nil {
		t.Fatalf("fresh secrets refused: %v", err)
	}
}

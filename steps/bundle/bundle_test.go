package bundle

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/pki"
)

var t0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func newCA(t *testing.T, kt pki.KeyType) *pki.CA {
	t.Helper()
	key, err := pki.GenerateKey(kt)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := pki.RandomSerial(rand.Reader)
	ca, err := pki.NewRoot(pki.Subject{CommonName: "Test CA " + string(kt)}, key, 24*time.Hour*365, t0, serial)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestSignOpenEveryKeyType(t *testing.T) {
	other := newCA(t, pki.ECDSAP256)
	for _, kt := range pki.KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			ca := newCA(t, kt)
			p := &Payload{Site: "s", Node: "web", Serial: 3, Created: t0}
			data, err := Sign(p, ca)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Open(data, Trust{Fingerprint: Fingerprint(ca.Cert), Node: "web", LastSerial: 2}, t0.Add(time.Hour))
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if got.Node != "web" || got.Serial != 3 {
				t.Fatalf("payload %+v", got)
			}
			if _, err := Open(data, Trust{CACert: ca.Cert}, t0); err != nil {
				t.Fatalf("open with the trusted certificate: %v", err)
			}
			refusals := []struct {
				name string
				t    Trust
				want string
			}{
				{"no trust", Trust{}, "--ca-fingerprint"},
				{"other CA", Trust{CACert: other.Cert}, "signed by another CA"},
				{"other fingerprint", Trust{Fingerprint: Fingerprint(other.Cert)}, "signed by another CA"},
				{"other node", Trust{CACert: ca.Cert, Node: "db"}, `for node "web", this host is node "db"`},
				{"replay", Trust{CACert: ca.Cert, LastSerial: 3}, "serial 3 is not newer than 3"},
			}
			for _, r := range refusals {
				_, err := Open(data, r.t, t0)
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), r.want) {
					t.Errorf("%s: %v, want a refusal with %q", r.name, err, r.want)
				}
			}
			// Every byte of the signed payload matters.
			var env Envelope
			if err := json.Unmarshal(data, &env); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(env.Payload); i += max(1, len(env.Payload)/40) {
				e := env
				e.Payload = append([]byte{}, env.Payload...)
				e.Payload[i] ^= 0x01
				d, _ := json.Marshal(e)
				if _, err := Open(d, Trust{CACert: ca.Cert}, t0); !errors.Is(err, ErrRefused) {
					t.Fatalf("payload byte %d changed: %v", i, err)
				}
			}
			// A signature made by another key over the same payload.
			forged, err := signPayload(other.Key, mustAlg(t, other), env.Payload)
			if err != nil {
				t.Fatal(err)
			}
			e := env
			e.Signature, e.Algorithm = forged, env.Algorithm
			d, _ := json.Marshal(e)
			if _, err := Open(d, Trust{CACert: ca.Cert}, t0); !errors.Is(err, ErrRefused) {
				t.Fatalf("forged signature accepted: %v", err)
			}
		})
	}
}

func mustAlg(t *testing.T, ca *pki.CA) x509.SignatureAlgorithm {
	alg, err := algorithm(ca.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return alg
}

func TestSignRefusesAKeyOfAnotherCertificate(t *testing.T) {
	a, b := newCA(t, pki.ECDSAP256), newCA(t, pki.ECDSAP256)
	if _, err := Sign(&Payload{Node: "x"}, &pki.CA{Cert: a.Cert, Key: b.Key}); err == nil {
		t.Fatal("signed with a key that is not the CA certificate's")
	}
}

func TestParseFingerprint(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	colons := strings.ToUpper(strings.TrimSuffix(strings.Repeat("AB:", 32), ":"))
	for _, in := range []string{"SHA256:" + hex, hex, "sha256 Fingerprint=" + colons, colons, " SHA256:" + strings.ToUpper(hex) + "\n"} {
		got, err := ParseFingerprint(in)
		if err != nil || got != "SHA256:"+hex {
			t.Errorf("ParseFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "SHA256:abc", "SHA256:" + strings.Repeat("zz", 32), "MD5:" + hex} {
		if _, err := ParseFingerprint(in); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", in)
		}
	}
}

func TestMakeRequestKeepsKeysAndChecks(t *testing.T) {
	site := steps.Example()
	root := t.TempDir()
	req, made, err := MakeRequest(root, site, "web", t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(made) != 3 {
		t.Fatalf("made %v, want the WireGuard, TLS and SSH host keys", made)
	}
	for _, p := range made {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", p, fi, err)
		}
		dir, _ := os.Stat(filepath.Dir(filepath.Join(root, p)))
		if dir.Mode().Perm() != 0o700 {
			t.Fatalf("%s's folder is %v", p, dir.Mode().Perm())
		}
	}
	data, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "PRIVATE KEY") {
		t.Fatal("the request holds a private key")
	}
	again, made2, err := MakeRequest(root, site, "web", t0)
	if err != nil || len(made2) != 0 || again.WireGuardPublicKey != req.WireGuardPublicKey || again.SSHHostKey != req.SSHHostKey {
		t.Fatalf("a second request made keys again: %v %v", made2, err)
	}
	parsed, err := ParseRequest(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Check(site, parsed); err != nil {
		t.Fatalf("check: %v", err)
	}

	// A CSR whose names are not the service's, a small RSA key, a CSR
	// whose signature was broken, another node, another site, a missing
	// or extra CSR, a certificate as host key.
	csrFor := func(cn string, names []string, bits int) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: names}, k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	sn := "api.internal.example.com"
	broken := func() string {
		block, _ := pem.Decode([]byte(req.CSRs["api"]))
		b := append([]byte{}, block.Bytes...)
		b[len(b)-5] ^= 0xff
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: b}))
	}()
	cases := []struct {
		name string
		edit func(r *Request)
		want string
	}{
		{"other name", func(r *Request) { r.CSRs["api"] = csrFor("evil.example.com", []string{"evil.example.com"}, 2048) }, "the site wants exactly"},
		{"extra name", func(r *Request) { r.CSRs["api"] = csrFor(sn, []string{sn, "evil.example.com"}, 2048) }, "the site wants exactly"},
		{"small key", func(r *Request) { r.CSRs["api"] = csrFor(sn, []string{sn}, 1024) }, "too small"},
		{"broken signature", func(r *Request) { r.CSRs["api"] = broken }, "csrs.api"},
		{"other node", func(r *Request) { r.Node = "dbx" }, `node "dbx"`},
		{"other site", func(r *Request) { r.Site = "elsewhere" }, `site "elsewhere"`},
		{"missing CSR", func(r *Request) { delete(r.CSRs, "api") }, `no certificate request for service "api"`},
		{"extra CSR", func(r *Request) { r.CSRs["db"] = r.CSRs["api"] }, `runs no service "db"`},
		{"bad WireGuard key", func(r *Request) { r.WireGuardPublicKey = "AAAA" }, "wireguard_public_key"},
		{"bad host key", func(r *Request) { r.SSHHostKey = "ssh-ed25519 AAAA" }, "ssh_host_key"},
	}
	for _, c := range cases {
		r := *parsed
		r.CSRs = map[string]string{}
		for k, v := range parsed.CSRs {
			r.CSRs[k] = v
		}
		c.edit(&r)
		_, err := Check(site, &r)
		if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestUserDataRoundTripAndRefusals(t *testing.T) {
	ca := newCA(t, pki.ECDSAP256)
	p := &Payload{Site: "s", Node: "web", Serial: 1, Created: t0, PrivateKeys: true}
	data, err := Sign(p, ca)
	if err != nil {
		t.Fatal(err)
	}
	in := Install{URL: "https://files.example.com/ztwizard", SHA256: strings.Repeat("ab", 32)}
	ud, err := UserData(p, data, []string{"nftables", "nginx"}, in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(ud), "#cloud-config\n") || !strings.Contains(string(ud), "private keys") {
		t.Fatalf("user-data:\n%s", ud)
	}
	got, ok, err := FromUserData(ud)
	if !ok || err != nil || string(got) != string(data) {
		t.Fatalf("FromUserData: ok %v, %v", ok, err)
	}
	if _, ok, _ := FromUserData(data); ok {
		t.Fatal("a bundle taken for user-data")
	}
	for _, bad := range []Install{
		{URL: "ftp://files.example.com/ztwizard", SHA256: in.SHA256},
		{URL: "https://files.example.com/$(reboot)", SHA256: in.SHA256},
		{URL: "https://files.example.com/zt'wizard", SHA256: in.SHA256},
		{URL: in.URL, SHA256: "abc"},
	} {
		if _, err := UserData(p, data, nil, bad); err == nil {
			t.Errorf("UserData accepted %+v", bad)
		}
	}
	if _, err := UserData(p, data, []string{"nginx; rm -rf /"}, in); err == nil {
		t.Error("UserData accepted a package name with a shell command")
	}
	for _, doc := range []string{
		"#cloud-config\nwrite_files: []\n",
		"#cloud-config\nwrite_files:\n  - {path: " + UserDataBundlePath + ", content: x}\n",
		"#cloud-config\nwrite_files:\n  - {path: " + UserDataBundlePath + ", encoding: b64, content: '!!'}\n",
		"#cloud-config\n: [\n",
	} {
		if _, ok, err := FromUserData([]byte(doc)); !ok || !errors.Is(err, ErrRefused) {
			t.Errorf("FromUserData(%q): ok %v, %v", doc, ok, err)
		}
	}
}

func TestPlanNeedsTheNodesOwnKeys(t *testing.T) {
	site := steps.Example()
	p := &Payload{Site: site.Site, Node: "web", Serial: 1}
	y, err := site.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p.SiteFile = string(y)
	p.Secrets = Secrets{WireGuardPubs: map[string]string{}, Addresses: map[string]string{}}
	if _, err := p.Plan(t.TempDir(), t0); err == nil || !strings.Contains(err.Error(), "is missing on this node") {
		t.Fatalf("a plan without the node's WireGuard key: %v", err)
	}
	other := *p
	other.Site = "elsewhere"
	if _, err := other.Plan(t.TempDir(), t0); !errors.Is(err, ErrRefused) {
		t.Fatalf("a bundle whose site file is another site's: %v", err)
	}
}

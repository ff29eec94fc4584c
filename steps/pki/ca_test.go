package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

func TestKeyTypes(t *testing.T) {
	want := []KeyType{"ecdsa-p256", "ecdsa-p384", "ed25519", "rsa-3072", "rsa-4096"}
	if got := KeyTypes(); !slices.Equal(got, want) {
		t.Fatalf("KeyTypes() = %v, want %v", got, want)
	}
}

func TestParseKeyType(t *testing.T) {
	for _, kt := range KeyTypes() {
		got, err := ParseKeyType(string(kt))
		if err != nil || got != kt {
			t.Errorf("ParseKeyType(%q) = %q, %v", kt, got, err)
		}
	}
	for _, bad := range []string{"", "rsa", "RSA-4096", "ecdsa-p521", "ed448"} {
		_, err := ParseKeyType(bad)
		if err == nil {
			t.Errorf("ParseKeyType(%q): no error", bad)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("%q", bad)) {
			t.Errorf("ParseKeyType(%q) error %q does not name the value", bad, msg)
		}
		for _, kt := range KeyTypes() {
			if !strings.Contains(msg, string(kt)) {
				t.Errorf("ParseKeyType(%q) error %q does not list %s", bad, msg, kt)
			}
		}
	}
}

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		kt    KeyType
		check func(any) bool
	}{
		{ECDSAP256, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P256() }},
		{ECDSAP384, func(k any) bool { e, ok := k.(*ecdsa.PrivateKey); return ok && e.Curve == elliptic.P384() }},
		{Ed25519, func(k any) bool { _, ok := k.(ed25519.PrivateKey); return ok }},
		{RSA3072, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 3072 }},
		{RSA4096, func(k any) bool { r, ok := k.(*rsa.PrivateKey); return ok && r.N.BitLen() == 4096 }},
	}
	for _, tt := range tests {
		t.Run(string(tt.kt), func(t *testing.T) {
			if k := testKey(t, tt.kt, 0); !tt.check(k) {
				t.Errorf("GenerateKey(%s) = %T", tt.kt, k)
			}
		})
	}
	if _, err := GenerateKey("dsa-1024"); err == nil || !strings.Contains(err.Error(), "dsa-1024") {
		t.Errorf("GenerateKey(dsa-1024) error = %v", err)
	}
}

func TestRandomSerial(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := serial(t)
		if s.Sign() <= 0 || s.BitLen() < 127 || s.BitLen() > 128 {
			t.Fatalf("serial %x: sign %d, %d bits", s, s.Sign(), s.BitLen())
		}
		if seen[s.String()] {
			t.Fatalf("serial %x repeated", s)
		}
		seen[s.String()] = true
	}
	zeros, err := RandomSerial(bytes.NewReader(make([]byte, 16)))
	if err != nil || zeros.BitLen() != 127 {
		t.Errorf("RandomSerial(zero reader) = %v, %v; want a 127-bit serial", zeros, err)
	}
	if _, err := RandomSerial(bytes.NewReader(make([]byte, 3))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("RandomSerial(short reader) error = %v, want io.ErrUnexpectedEOF", err)
	}
}

// wantSignature is the signature algorithm Go picks for each key type.
var wantSignature = map[KeyType]struct {
	alg     x509.SignatureAlgorithm
	openssl string
}{
	ECDSAP256: {x509.ECDSAWithSHA256, "ecdsa-with-SHA256"},
	ECDSAP384: {x509.ECDSAWithSHA384, "ecdsa-with-SHA384"},
	Ed25519:   {x509.PureEd25519, "ED25519"},
	RSA3072:   {x509.SHA256WithRSA, "sha256WithRSAEncryption"},
	RSA4096:   {x509.SHA256WithRSA, "sha256WithRSAEncryption"},
}

// rfc5280SKI computes the method-1 key identifier from the certificate's
// encoded SubjectPublicKeyInfo.
func rfc5280SKI(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:]
}

func TestIssueVerifiedByOpenSSL(t *testing.T) {
	for _, kt := range KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ca := testRoot(t, kt, 0, "Example Root")
			server := testServer(t, ca, kt, 1)
			client := testClient(t, ca, kt, 2, "alice")
			impostor := testRoot(t, kt, 3, "Example Root") // same name, other key
			intruder := testClient(t, impostor, kt, 2, "mallory")

			// Go-side properties.
			for name, c := range map[string]*x509.Certificate{"root": ca.Cert, "server": server, "client": client} {
				if c.SignatureAlgorithm != wantSignature[kt].alg {
					t.Errorf("%s signature = %v, want %v", name, c.SignatureAlgorithm, wantSignature[kt].alg)
				}
				if want := testNow.Add(-Backdate); !c.NotBefore.Equal(want) {
					t.Errorf("%s NotBefore = %v, want %v", name, c.NotBefore, want)
				}
				if !bytes.Equal(c.SubjectKeyId, rfc5280SKI(t, c)) {
					t.Errorf("%s SubjectKeyId %x is not SHA-1 of the public key bits", name, c.SubjectKeyId)
				}
			}
			if !ca.Cert.IsCA || !ca.Cert.MaxPathLenZero || ca.Cert.MaxPathLen != 0 ||
				ca.Cert.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
				t.Errorf("root: IsCA %v MaxPathLen %d/%v KeyUsage %v", ca.Cert.IsCA, ca.Cert.MaxPathLen, ca.Cert.MaxPathLenZero, ca.Cert.KeyUsage)
			}
			if err := ca.Cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("root is not self-signed: %v", err)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if strings.HasPrefix(string(kt), "rsa") {
				wantKU |= x509.KeyUsageKeyEncipherment
			}
			for name, c := range map[string]*x509.Certificate{"server": server, "client": client} {
				if c.IsCA || c.KeyUsage != wantKU {
					t.Errorf("%s: IsCA %v KeyUsage %v, want %v", name, c.IsCA, c.KeyUsage, wantKU)
				}
				if !bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId) {
					t.Errorf("%s AuthorityKeyId %x, want CA SKI %x", name, c.AuthorityKeyId, ca.Cert.SubjectKeyId)
				}
				if want := testNow.Add(90 * 24 * time.Hour); !c.NotAfter.Equal(want) {
					t.Errorf("%s NotAfter = %v, want %v", name, c.NotAfter, want)
				}
			}
			if !slices.Equal(server.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) ||
				server.Subject.CommonName != "web.example.internal" ||
				!slices.Equal(server.DNSNames, []string{"web.example.internal", "web"}) ||
				len(server.IPAddresses) != 2 || server.IPAddresses[0].String() != "10.8.0.1" || server.IPAddresses[1].String() != "fd00::1" {
				t.Errorf("server: EKU %v CN %q DNS %v IP %v", server.ExtKeyUsage, server.Subject.CommonName, server.DNSNames, server.IPAddresses)
			}
			if !slices.Equal(client.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) ||
				client.Subject.CommonName != "alice" || !slices.Equal(client.Subject.Organization, []string{"staff"}) {
				t.Errorf("client: EKU %v subject %v", client.ExtKeyUsage, client.Subject)
			}

			// openssl verify.
			testenv.WriteFile(t, dir, "ca.pem", EncodeCertPEM(ca.Cert))
			testenv.WriteFile(t, dir, "server.pem", EncodeCertPEM(server))
			testenv.WriteFile(t, dir, "client.pem", EncodeCertPEM(client))
			testenv.WriteFile(t, dir, "intruder.pem", EncodeCertPEM(intruder))
			for _, leaf := range []struct{ file, purpose string }{{"server.pem", "sslserver"}, {"client.pem", "sslclient"}} {
				out := mustOpenSSL(t, dir, "verify", "-attime", attime(), "-purpose", leaf.purpose, "-CAfile", "ca.pem", leaf.file)
				if !strings.Contains(out, leaf.file+": OK") {
					t.Errorf("openssl verify %s: %s", leaf.file, out)
				}
			}
			// Each leaf serves its one purpose only: a client certificate
			// cannot serve TLS, a server certificate cannot log in.
			for _, leaf := range []struct{ file, purpose string }{{"server.pem", "sslclient"}, {"client.pem", "sslserver"}} {
				if out, err := openssl(t, dir, "verify", "-attime", attime(), "-purpose", leaf.purpose, "-CAfile", "ca.pem", leaf.file); err == nil {
					t.Errorf("openssl verify -purpose %s accepted %s:\n%s", leaf.purpose, leaf.file, out)
				}
			}
			if out, err := openssl(t, dir, "verify", "-attime", attime(), "-CAfile", "ca.pem", "intruder.pem"); err == nil {
				t.Errorf("openssl verify accepted a leaf from an impostor CA:\n%s", out)
			}

			// openssl x509 -text.
			caText := mustOpenSSL(t, dir, "x509", "-in", "ca.pem", "-noout", "-text")
			for _, want := range []string{
				"X509v3 Basic Constraints: critical", "CA:TRUE, pathlen:0",
				"X509v3 Key Usage: critical", "Certificate Sign, CRL Sign",
				"X509v3 Subject Key Identifier", colonHex(ca.Cert.SubjectKeyId),
				"Signature Algorithm: " + wantSignature[kt].openssl,
				"CN = Example Root", "O = Example Org", "C = DE",
			} {
				if !strings.Contains(caText, want) {
					t.Errorf("openssl x509 -text of the root lacks %q:\n%s", want, caText)
				}
			}
			serverText := mustOpenSSL(t, dir, "x509", "-in", "server.pem", "-noout", "-text")
			clientText := mustOpenSSL(t, dir, "x509", "-in", "client.pem", "-noout", "-text")
			leafWants := []string{
				"CA:FALSE", "Digital Signature",
				"X509v3 Authority Key Identifier", colonHex(ca.Cert.SubjectKeyId),
				"X509v3 Subject Key Identifier",
				"Signature Algorithm: " + wantSignature[kt].openssl,
			}
			if strings.HasPrefix(string(kt), "rsa") {
				leafWants = append(leafWants, "Digital Signature, Key Encipherment")
			}
			for text, wants := range map[string][]string{
				serverText: append(slices.Clone(leafWants), colonHex(server.SubjectKeyId), "TLS Web Server Authentication",
					"CN = web.example.internal", "DNS:web.example.internal", "DNS:web", "IP Address:10.8.0.1", "IP Address:FD00:0:0:0:0:0:0:1"),
				clientText: append(slices.Clone(leafWants), colonHex(client.SubjectKeyId), "TLS Web Client Authentication",
					"CN = alice", "O = staff"),
			} {
				for _, want := range wants {
					if !strings.Contains(text, want) {
						t.Errorf("openssl x509 -text of a leaf lacks %q:\n%s", want, text)
					}
				}
			}
		})
	}
}

func TestLeafNotAfterClampedToCA(t *testing.T) {
	for _, kt := range KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ca, err := NewRoot(Subject{CommonName: "Short Root"}, testKey(t, kt, 0), 30*24*time.Hour, testNow, serial(t))
			if err != nil {
				t.Fatal(err)
			}
			leaf := testClient(t, ca, kt, 1, "bob")
			if !leaf.NotAfter.Equal(ca.Cert.NotAfter) {
				t.Errorf("leaf NotAfter %v, want the CA's %v", leaf.NotAfter, ca.Cert.NotAfter)
			}
			// Issuing one minute before the CA expires still works, clamped.
			late := ca.Cert.NotAfter.Add(-time.Minute)
			c, err := ca.IssueServer(testKey(t, kt, 1).Public(), "late", []string{"late"}, nil, time.Hour, late, serial(t))
			if err != nil || !c.NotAfter.Equal(ca.Cert.NotAfter) || !c.NotBefore.Equal(late.Add(-Backdate)) {
				t.Errorf("late issue: %v, NotBefore %v NotAfter %v", err, c.NotBefore, c.NotAfter)
			}

			testenv.WriteFile(t, dir, "ca.pem", EncodeCertPEM(ca.Cert))
			testenv.WriteFile(t, dir, "leaf.pem", EncodeCertPEM(leaf))
			caEnd := mustOpenSSL(t, dir, "x509", "-in", "ca.pem", "-noout", "-enddate")
			leafEnd := mustOpenSSL(t, dir, "x509", "-in", "leaf.pem", "-noout", "-enddate")
			if caEnd != leafEnd {
				t.Errorf("openssl: leaf %q, CA %q", leafEnd, caEnd)
			}
			mustOpenSSL(t, dir, "verify", "-attime", attime(), "-CAfile", "ca.pem", "leaf.pem")
		})
	}
}

func TestIssueRejects(t *testing.T) {
	ca := testRoot(t, ECDSAP256, 0, "Example Root")
	pub := testKey(t, ECDSAP256, 1).Public()
	day := 24 * time.Hour
	sans := []string{"host"}
	expired := ca.Cert.NotAfter
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"root nil serial", func() error {
			_, err := NewRoot(Subject{CommonName: "r"}, testKey(t, ECDSAP256, 0), day, testNow, nil)
			return err
		}, `pki: new root "r": serial`},
		{"root zero serial", func() error {
			_, err := NewRoot(Subject{CommonName: "r"}, testKey(t, ECDSAP256, 0), day, testNow, big.NewInt(0))
			return err
		}, "must be positive"},
		{"root empty CN", func() error {
			_, err := NewRoot(Subject{}, testKey(t, ECDSAP256, 0), day, testNow, big.NewInt(1))
			return err
		}, "empty common name"},
		{"root zero validity", func() error {
			_, err := NewRoot(Subject{CommonName: "r"}, testKey(t, ECDSAP256, 0), 0, testNow, big.NewInt(1))
			return err
		}, "validity"},
		{"root nil key", func() error {
			_, err := NewRoot(Subject{CommonName: "r"}, nil, day, testNow, big.NewInt(1))
			return err
		}, "nil key"},
		{"client nil serial", func() error {
			_, err := ca.IssueClient(pub, "alice", "", day, testNow, nil)
			return err
		}, `pki: issue client "alice": serial`},
		{"client negative serial", func() error {
			_, err := ca.IssueClient(pub, "alice", "", day, testNow, big.NewInt(-5))
			return err
		}, "serial -5 must be positive"},
		{"client zero validity", func() error {
			_, err := ca.IssueClient(pub, "alice", "", 0, testNow, big.NewInt(1))
			return err
		}, "validity 0s must be positive"},
		{"client negative validity", func() error {
			_, err := ca.IssueClient(pub, "alice", "", -day, testNow, big.NewInt(1))
			return err
		}, "must be positive"},
		{"client empty CN", func() error {
			_, err := ca.IssueClient(pub, "", "staff", day, testNow, big.NewInt(1))
			return err
		}, "empty common name"},
		{"client nil key", func() error {
			_, err := ca.IssueClient(nil, "alice", "", day, testNow, big.NewInt(1))
			return err
		}, "nil public key"},
		{"client CA expired", func() error {
			_, err := ca.IssueClient(pub, "alice", "", day, expired, big.NewInt(1))
			return err
		}, "expired"},
		{"server CA expired", func() error {
			_, err := ca.IssueServer(pub, "host", sans, nil, day, expired.Add(day), big.NewInt(1))
			return err
		}, `pki: issue server "host": CA "Example Root" expired`},
		{"server no SAN", func() error {
			_, err := ca.IssueServer(pub, "host", nil, nil, day, testNow, big.NewInt(1))
			return err
		}, "no DNS name or IP address"},
		{"server empty DNS name", func() error {
			_, err := ca.IssueServer(pub, "host", []string{""}, nil, day, testNow, big.NewInt(1))
			return err
		}, "empty DNS name"},
		{"server invalid IP", func() error {
			_, err := ca.IssueServer(pub, "host", nil, []netip.Addr{{}}, day, testNow, big.NewInt(1))
			return err
		}, "invalid IP address"},
		{"server empty CN", func() error {
			_, err := ca.IssueServer(pub, "", sans, nil, day, testNow, big.NewInt(1))
			return err
		}, "empty common name"},
		{"server zero serial", func() error {
			_, err := ca.IssueServer(pub, "host", sans, nil, day, testNow, big.NewInt(0))
			return err
		}, "must be positive"},
		{"incomplete CA", func() error {
			_, err := (&CA{Cert: ca.Cert}).IssueClient(pub, "alice", "", day, testNow, big.NewInt(1))
			return err
		}, "CA certificate or key missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCertPEM(t *testing.T) {
	ca := testRoot(t, Ed25519, 0, "Example Root")
	p := EncodeCertPEM(ca.Cert)
	if !bytes.HasPrefix(p, []byte("-----BEGIN CERTIFICATE-----\n")) {
		t.Fatalf("EncodeCertPEM:\n%s", p)
	}
	key, err := EncodeKeyPEM(testKey(t, Ed25519, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A key block before the certificate is skipped.
	got, err := DecodeCertPEM(append(key, p...))
	if err != nil || !got.Equal(ca.Cert) {
		t.Fatalf("DecodeCertPEM round trip: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("junk"), key, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if _, err := DecodeCertPEM(bad); err == nil || !strings.HasPrefix(err.Error(), "pki: decode certificate") {
			t.Errorf("DecodeCertPEM(%q) error = %v", bad, err)
		}
	}
}

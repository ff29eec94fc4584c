package pull

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"ztwizard/steps/pki"
)

func testCA(t *testing.T, key crypto.Signer) *pki.CA {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

func krl(version uint64) []byte {
	b := []byte("SSHKRL\n\x00\x00\x00\x00\x01")
	b = binary.BigEndian.AppendUint64(b, version)
	return append(b, make([]byte, 16)...)
}

// The KRL's detached signature works with every CA key type the site
// allows, and binds the KRL's bytes and the CA.
func TestKRLSignature(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCA := testCA(t, other)
	for name, key := range map[string]crypto.Signer{"ecdsa": ec, "ed25519": ed, "rsa": rs} {
		ca := testCA(t, key)
		k := krl(7)
		sig, err := SignKRL(ca, k)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := CheckKRL(ca.Cert, krl(6), k, sig); err != nil {
			t.Errorf("%s: a good KRL refused: %v", name, err)
		}
		if err := CheckKRL(ca.Cert, krl(8), k, sig); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: a lower version accepted: %v", name, err)
		}
		bad := krl(7)
		bad[len(bad)-1] = 1
		if err := CheckKRL(ca.Cert, nil, bad, sig); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: a changed KRL accepted: %v", name, err)
		}
		if err := CheckKRL(otherCA.Cert, nil, k, sig); !errors.Is(err, ErrRefused) {
			t.Errorf("%s: another CA's signature accepted: %v", name, err)
		}
	}
}

// A CRL past its nextUpdate is refused even when signed and newer.
func TestCRLPastNextUpdate(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := testCA(t, key)
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(5),
		ThisUpdate: now.Add(-2 * time.Hour), NextUpdate: now.Add(-time.Hour)}, ca.Cert, key)
	if err != nil {
		t.Fatal(err)
	}
	crl := pemCRL(der)
	if _, err := CheckCRL(ca.Cert, nil, crl, now); !errors.Is(err, ErrRefused) {
		t.Fatalf("an expired CRL accepted: %v", err)
	}
	if _, err := CheckCRL(ca.Cert, nil, crl, now.Add(-90*time.Minute)); err != nil {
		t.Fatalf("the same CRL before its nextUpdate: %v", err)
	}
}

func pemCRL(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

package pull

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/pki"
)

func namedCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: mustParse(t, der), Key: key}
}

func signCRL(t *testing.T, ca *pki.CA, number int64, next time.Time) []byte {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number),
		ThisUpdate: time.Now().Add(-2 * time.Hour), NextUpdate: next}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return pemCRL(der)
}

// During a CA rotation's overlap a node trusts two CAs and its CRL file
// holds one CRL of each. Every CRL of a fetched file is checked, each
// against its own issuer among the trusted CAs and against the installed
// CRL of that issuer: the second CRL with a lower number, from a CA the
// node does not trust, with a bad signature or past its nextUpdate is
// refused, and the installed file kept.
func TestPullChecksEveryCRL(t *testing.T) {
	oldCA, newCA, otherCA := namedCA(t, "old CA"), namedCA(t, "new CA"), namedCA(t, "other CA")
	later := time.Now().Add(time.Hour)
	installed := append(signCRL(t, oldCA, 5, later), signCRL(t, newCA, 5, later)...)
	badSig := signCRL(t, newCA, 6, later)
	{
		b, _ := pemDecode(badSig)
		b[len(b)-3] ^= 0xff
		badSig = pemCRL(b)
	}
	pub := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(pub)), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	from := "http://" + ln.Addr().String()
	k := krl(1)
	sig, err := SignKRL(oldCA, k)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(pub, KRLName), k, 0o644)
	os.WriteFile(filepath.Join(pub, KRLSigName), sig, 0o644)

	for _, tc := range []struct {
		name string
		crl  []byte
		want string // "" accepted
	}{
		{"new CA's lower", append(signCRL(t, oldCA, 6, later), signCRL(t, newCA, 4, later)...), "lower than the installed one's"},
		{"untrusted CA's", append(signCRL(t, oldCA, 6, later), signCRL(t, otherCA, 9, later)...), "not signed by the installed CA"},
		{"bad signature", append(signCRL(t, oldCA, 6, later), badSig...), "not signed by the installed CA"},
		{"past nextUpdate", append(signCRL(t, oldCA, 6, later), signCRL(t, newCA, 6, time.Now().Add(-time.Minute))...), "nextUpdate"},
		{"not a CRL", append(signCRL(t, oldCA, 6, later), pemCert(newCA.Cert)...), "not an X509 CRL"},
		{"both newer", append(signCRL(t, oldCA, 6, later), signCRL(t, newCA, 6, later)...), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "etc/ztwizard"), 0o755)
			os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755)
			os.WriteFile(filepath.Join(root, steps.CACertPath), append(pemCert(oldCA.Cert), pemCert(newCA.Cert)...), 0o644)
			os.WriteFile(filepath.Join(root, steps.CRLPath), installed, 0o644)
			os.WriteFile(filepath.Join(pub, CRLName), tc.crl, 0o644)
			res, err := Pull(context.Background(), Options{Root: root, From: from, Now: time.Now()})
			got, _ := os.ReadFile(filepath.Join(root, steps.CRLPath))
			if tc.want == "" {
				if err != nil || !res.CRL || string(got) != string(tc.crl) {
					t.Fatalf("a good pair of CRLs: %+v %v", res, err)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull: %v, want a refusal with %q", err, tc.want)
			}
			if res.CRL || string(got) != string(installed) {
				t.Fatal("the refused CRL file was installed")
			}
		})
	}
}

func pemDecode(data []byte) ([]byte, error) {
	crl, err := ParseCRL(data)
	if err != nil {
		return nil, err
	}
	return crl.Raw, nil
}

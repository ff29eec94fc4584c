package pki

import (
	"bytes"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

func TestCRLVerifiedByOpenSSL(t *testing.T) {
	for _, kt := range KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ca := testRoot(t, kt, 0, "Example Root")
			revoked := testClient(t, ca, kt, 1, "revoked")
			kept := testClient(t, ca, kt, 2, "kept")
			impostor := testRoot(t, kt, 3, "Example Root") // same name, other key
			revokedAt := testNow.Add(-time.Hour)

			der, err := ca.CRL([]Revoked{{Serial: revoked.SerialNumber, At: revokedAt}}, big.NewInt(7), testNow, 7*24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("CRL signature: %v", err)
			}
			if crl.SignatureAlgorithm != wantSignature[kt].alg {
				t.Errorf("CRL signature algorithm %v, want %v", crl.SignatureAlgorithm, wantSignature[kt].alg)
			}
			if !crl.ThisUpdate.Equal(testNow) || !crl.NextUpdate.Equal(testNow.Add(7*24*time.Hour)) || crl.Number.Int64() != 7 {
				t.Errorf("CRL ThisUpdate %v NextUpdate %v Number %v", crl.ThisUpdate, crl.NextUpdate, crl.Number)
			}
			if !bytes.Equal(crl.AuthorityKeyId, ca.Cert.SubjectKeyId) {
				t.Errorf("CRL AuthorityKeyId %x, want %x", crl.AuthorityKeyId, ca.Cert.SubjectKeyId)
			}
			if e := crl.RevokedCertificateEntries; len(e) != 1 || e[0].SerialNumber.Cmp(revoked.SerialNumber) != 0 || !e[0].RevocationTime.Equal(revokedAt) {
				t.Errorf("CRL entries %+v", e)
			}

			testenv.WriteFile(t, dir, "ca.pem", EncodeCertPEM(ca.Cert))
			testenv.WriteFile(t, dir, "impostor.pem", EncodeCertPEM(impostor.Cert))
			testenv.WriteFile(t, dir, "crl.pem", EncodeCRLPEM(der))
			testenv.WriteFile(t, dir, "revoked.pem", EncodeCertPEM(revoked))
			testenv.WriteFile(t, dir, "kept.pem", EncodeCertPEM(kept))

			if out := mustOpenSSL(t, dir, "crl", "-in", "crl.pem", "-CAfile", "ca.pem", "-noout", "-verify"); !strings.Contains(out, "verify OK") {
				t.Errorf("openssl crl -verify: %s", out)
			}
			// openssl 3.0 "crl -verify" exits 0 on a bad signature; read its verdict.
			if out, _ := openssl(t, dir, "crl", "-in", "crl.pem", "-CAfile", "impostor.pem", "-noout", "-verify"); !strings.Contains(out, "verify failure") {
				t.Errorf("openssl crl -verify did not reject the CRL against an impostor CA:\n%s", out)
			}
			text := mustOpenSSL(t, dir, "crl", "-in", "crl.pem", "-noout", "-text")
			for _, want := range []string{
				"Serial Number: " + opensslHex(revoked.SerialNumber),
				"X509v3 CRL Number", "7",
				"X509v3 Authority Key Identifier", colonHex(ca.Cert.SubjectKeyId),
				"Last Update: Nov  1 09:30:00 2026 GMT", "Next Update: Nov  8 09:30:00 2026 GMT",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("openssl crl -text lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, opensslHex(kept.SerialNumber)) {
				t.Errorf("openssl crl -text lists the kept serial:\n%s", text)
			}

			verify := []string{"verify", "-attime", attime(), "-crl_check", "-CRLfile", "crl.pem", "-CAfile", "ca.pem"}
			if out, err := openssl(t, dir, append(verify, "revoked.pem")...); err == nil || !strings.Contains(out, "certificate revoked") {
				t.Errorf("openssl verify -crl_check on the revoked leaf: err %v\n%s", err, out)
			}
			if out := mustOpenSSL(t, dir, append(verify, "kept.pem")...); !strings.Contains(out, "kept.pem: OK") {
				t.Errorf("openssl verify -crl_check on the kept leaf: %s", out)
			}
		})
	}
}

func TestCRLNextUpdateClampedToCA(t *testing.T) {
	ca := testRoot(t, ECDSAP256, 0, "Example Root")
	der, err := ca.CRL(nil, big.NewInt(0), testNow, 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if !crl.NextUpdate.Equal(ca.Cert.NotAfter) || len(crl.RevokedCertificateEntries) != 0 {
		t.Errorf("NextUpdate %v, want the CA's NotAfter %v; %d entries", crl.NextUpdate, ca.Cert.NotAfter, len(crl.RevokedCertificateEntries))
	}
	if p := EncodeCRLPEM(der); !bytes.HasPrefix(p, []byte("-----BEGIN X509 CRL-----\n")) {
		t.Errorf("EncodeCRLPEM:\n%s", p)
	}
}

func TestCRLRejects(t *testing.T) {
	ca := testRoot(t, ECDSAP256, 0, "Example Root")
	day := 24 * time.Hour
	one := big.NewInt(1)
	tests := []struct {
		name    string
		revoked []Revoked
		number  *big.Int
		now     time.Time
		valid   time.Duration
		want    string
	}{
		{"nil number", nil, nil, testNow, day, "CRL number must be non-negative"},
		{"negative number", nil, big.NewInt(-1), testNow, day, "non-negative"},
		{"zero validity", nil, one, testNow, 0, "validity 0s must be positive"},
		{"CA expired", nil, one, ca.Cert.NotAfter, day, "expired"},
		{"nil serial", []Revoked{{At: testNow}}, one, testNow, day, "revoked serial <nil> must be positive"},
		{"zero serial", []Revoked{{Serial: big.NewInt(0), At: testNow}}, one, testNow, day, "must be positive"},
		{"no time", []Revoked{{Serial: one}}, one, testNow, day, "no revocation time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.CRL(tt.revoked, tt.number, tt.now, tt.valid)
			if err == nil || !strings.HasPrefix(err.Error(), "pki: CRL") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

package pki

import (
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

// BenchmarkIssueClient compares making one client identity (key,
// certificate, PEM files) with this package against the openssl commands an
// administrator would run for the same job. bench/pki_compare.sh runs it.
func BenchmarkIssueClient(b *testing.B) {
	newKeyArgs := map[KeyType][]string{
		ECDSAP256: {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"},
		RSA4096:   {"-newkey", "rsa:4096"},
	}
	for _, kt := range []KeyType{ECDSAP256, RSA4096} {
		b.Run("ztwizard/"+string(kt), func(b *testing.B) {
			ca := testRoot(b, kt, 0, "Bench Root")
			b.ResetTimer()
			for b.Loop() {
				key, err := GenerateKey(kt)
				if err != nil {
					b.Fatal(err)
				}
				sn, err := RandomSerial(nil)
				if err != nil {
					b.Fatal(err)
				}
				cert, err := ca.IssueClient(key.Public(), "alice", "staff", 90*24*time.Hour, testNow, sn)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := EncodeKeyPEM(key, nil); err != nil {
					b.Fatal(err)
				}
				_ = EncodeCertPEM(cert)
			}
		})
		b.Run("openssl/"+string(kt), func(b *testing.B) {
			dir := b.TempDir()
			ca := testRoot(b, kt, 0, "Bench Root")
			caKey, err := EncodeKeyPEM(ca.Key, nil)
			if err != nil {
				b.Fatal(err)
			}
			testenv.WriteFile(b, dir, "ca.pem", EncodeCertPEM(ca.Cert))
			testenv.WriteFile(b, dir, "cakey.pem", caKey)
			req := append(append([]string{"req", "-new"}, newKeyArgs[kt]...),
				"-nodes", "-keyout", "k.pem", "-out", "r.csr", "-subj", "/CN=alice/O=staff")
			sign := []string{"x509", "-req", "-in", "r.csr", "-CA", "ca.pem", "-CAkey", "cakey.pem",
				"-CAcreateserial", "-days", "90", "-out", "c.pem"}
			b.ResetTimer()
			for b.Loop() {
				mustOpenSSL(b, dir, req...)
				mustOpenSSL(b, dir, sign...)
			}
		})
	}
}

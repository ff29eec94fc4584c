package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"ztwizard/steps/testenv"
)

func samePublic(a, b crypto.Signer) bool {
	pa, ok := a.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pa.Equal(b.Public())
}

func TestKeyPEMRoundTrip(t *testing.T) {
	pass := []byte("correct horse battery staple")
	for _, kt := range KeyTypes() {
		for _, tc := range []struct {
			name       string
			passphrase []byte
			pemType    string
		}{
			{"plain", nil, "PRIVATE KEY"},
			{"encrypted", pass, "ENCRYPTED PRIVATE KEY"},
		} {
			t.Run(string(kt)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				key := testKey(t, kt, 0)
				data, err := EncodeKeyPEM(key, tc.passphrase)
				if err != nil {
					t.Fatal(err)
				}
				block, _ := pem.Decode(data)
				if block == nil || block.Type != tc.pemType {
					t.Fatalf("EncodeKeyPEM wrote:\n%s", data)
				}
				got, err := DecodeKeyPEM(data, tc.passphrase)
				if err != nil {
					t.Fatal(err)
				}
				if !samePublic(got, key) {
					t.Errorf("decoded %T does not match the original key", got)
				}
				if tc.passphrase == nil {
					return
				}
				if _, err := DecodeKeyPEM(data, []byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
					t.Errorf("wrong passphrase: error = %v, want ErrBadPassphrase", err)
				}
				if _, err := DecodeKeyPEM(data, nil); !errors.Is(err, ErrPassphraseRequired) {
					t.Errorf("no passphrase: error = %v, want ErrPassphraseRequired", err)
				}
				plain, err := x509.MarshalPKCS8PrivateKey(key)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(block.Bytes, plain) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(plain)[:40])) {
					t.Error("encrypted PEM contains the plain PKCS#8 key")
				}
			})
		}
	}
}

func TestDecodeKeyPEMRejects(t *testing.T) {
	cert := EncodeCertPEM(testRoot(t, ECDSAP256, 0, "Example Root").Cert)
	for _, data := range [][]byte{nil, []byte("junk"), cert,
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x00}})} {
		if _, err := DecodeKeyPEM(data, nil); err == nil || !strings.HasPrefix(err.Error(), "pki: decode key") {
			t.Errorf("DecodeKeyPEM(%.30q) error = %v", data, err)
		}
	}
	if _, err := EncodeKeyPEM(nil, nil); err == nil {
		t.Error("EncodeKeyPEM(nil): no error")
	}
}

func TestKeyPEMWithOpenSSL(t *testing.T) {
	for _, kt := range KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			key := testKey(t, kt, 0)
			pass := []byte("s3cret passphrase")
			plain, err := EncodeKeyPEM(key, nil)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := EncodeKeyPEM(key, pass)
			if err != nil {
				t.Fatal(err)
			}
			testenv.WriteFile(t, dir, "plain.pem", plain)
			testenv.WriteFile(t, dir, "enc.pem", enc)
			testenv.WriteFile(t, dir, "pass", append(pass, '\n'))
			testenv.WriteFile(t, dir, "wrongpass", []byte("not it\n"))

			mustOpenSSL(t, dir, "pkey", "-in", "plain.pem", "-noout")
			mustOpenSSL(t, dir, "pkey", "-in", "enc.pem", "-passin", "file:pass", "-noout")
			for _, passin := range []string{"file:wrongpass", "pass:"} {
				if out, err := openssl(t, dir, "pkey", "-in", "enc.pem", "-passin", passin, "-noout"); err == nil {
					t.Errorf("openssl pkey -passin %s opened the encrypted key:\n%s", passin, out)
				}
			}
			// Both files hold the same key.
			pubPlain := mustOpenSSL(t, dir, "pkey", "-in", "plain.pem", "-pubout")
			pubEnc := mustOpenSSL(t, dir, "pkey", "-in", "enc.pem", "-passin", "file:pass", "-pubout")
			if pubPlain != pubEnc {
				t.Errorf("public keys differ:\n%s\n%s", pubPlain, pubEnc)
			}
			asn1 := mustOpenSSL(t, dir, "asn1parse", "-in", "enc.pem")
			for _, want := range []string{":PBES2", ":PBKDF2", ":hmacWithSHA256", ":aes-256-cbc"} {
				if !strings.Contains(asn1, want) {
					t.Errorf("encrypted key lacks %s:\n%s", want, asn1)
				}
			}

			// A key encrypted by openssl decodes here too.
			mustOpenSSL(t, dir, "pkey", "-in", "plain.pem", "-aes256", "-passout", "file:pass", "-out", "ossl.pem")
			ossl, err := os.ReadFile(filepath.Join(dir, "ossl.pem"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeKeyPEM(ossl, pass)
			if err != nil || !samePublic(got, key) {
				t.Errorf("DecodeKeyPEM(openssl-encrypted key): %v", err)
			}
			if _, err := DecodeKeyPEM(ossl, []byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
				t.Errorf("openssl-encrypted key, wrong passphrase: error = %v", err)
			}
		})
	}
}

func TestPKCS12WithOpenSSL(t *testing.T) {
	const password = "bundle-pass-9f3a"
	for _, kt := range KeyTypes() {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ca := testRoot(t, kt, 0, "Example Root")
			key := testKey(t, kt, 1)
			client := testClient(t, ca, kt, 1, "alice")
			pfx, err := PKCS12(client, key, []*x509.Certificate{ca.Cert}, password)
			if err != nil {
				t.Fatal(err)
			}
			testenv.WriteFile(t, dir, "b.p12", pfx)

			out := mustOpenSSL(t, dir, "pkcs12", "-in", "b.p12", "-passin", "pass:"+password, "-nodes")
			for _, want := range []string{"CN = alice", "CN = Example Root", "-----BEGIN PRIVATE KEY-----"} {
				if !strings.Contains(out, want) {
					t.Errorf("openssl pkcs12 output lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out, "-----BEGIN CERTIFICATE-----"); n != 2 {
				t.Errorf("openssl pkcs12 printed %d certificates, want 2:\n%s", n, out)
			}
			// Every bag is named (NSS's pk12util warns without a name), the key
			// and its certificate share a localKeyID.
			if n := strings.Count(out, "friendlyName: alice\n"); n != 2 {
				t.Errorf("friendlyName alice on %d bags, want the key's and the certificate's:\n%s", n, out)
			}
			if n := strings.Count(out, "friendlyName: Example Root\n"); n != 1 {
				t.Errorf("friendlyName Example Root on %d bags, want the CA certificate's:\n%s", n, out)
			}
			if n := strings.Count(out, "localKeyID: "); n != 2 {
				t.Errorf("localKeyID on %d bags, want 2:\n%s", n, out)
			}
			// Modern algorithms and iteration counts throughout.
			info := mustOpenSSL(t, dir, "pkcs12", "-in", "b.p12", "-passin", "pass:"+password, "-info", "-noout")
			for _, want := range []string{
				"MAC: sha256, Iteration 100000",
				"PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256",
				"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256",
			} {
				if !strings.Contains(info, want) {
					t.Errorf("openssl pkcs12 -info lacks %q:\n%s", want, info)
				}
			}
			if out, err := openssl(t, dir, "pkcs12", "-in", "b.p12", "-passin", "pass:wrong", "-nodes"); err == nil {
				t.Errorf("openssl pkcs12 opened the bundle with a wrong password:\n%s", out)
			}

			gotKey, gotCert, gotChain, err := pkcs12.DecodeChain(pfx, password)
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := gotKey.(crypto.Signer); !ok || !samePublic(s, key) || !gotCert.Equal(client) || len(gotChain) != 1 || !gotChain[0].Equal(ca.Cert) {
				t.Errorf("pkcs12.DecodeChain: key %T cert %v chain %d", gotKey, gotCert.Subject, len(gotChain))
			}

			if _, err := PKCS12(client, testKey(t, kt, 2), nil, password); err == nil || !strings.Contains(err.Error(), "does not match") {
				t.Errorf("PKCS12 with the wrong key: error = %v", err)
			}
		})
	}
}

// TestPKCS12Passwords: long and non-ASCII passwords open the bundle with
// go-pkcs12 and openssl (the MAC's KDF repeats a password over several
// blocks; PBES2 takes its UTF-8 bytes, the MAC its UTF-16).
func TestPKCS12Passwords(t *testing.T) {
	ca := testRoot(t, ECDSAP256, 0, "Example Root")
	key := testKey(t, ECDSAP256, 1)
	client := testClient(t, ca, ECDSAP256, 1, "alice")
	for _, password := range []string{strings.Repeat("long-password-", 10), "pässwörd-日本"} {
		pfx, err := PKCS12(client, key, nil, password)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := pkcs12.Decode(pfx, password); err != nil {
			t.Errorf("go-pkcs12, password %q: %v", password, err)
		}
		dir := t.TempDir()
		testenv.WriteFile(t, dir, "b.p12", pfx)
		testenv.WriteFile(t, dir, "pass", []byte(password))
		if out, err := openssl(t, dir, "pkcs12", "-in", "b.p12", "-passin", "file:pass", "-nokeys", "-noout"); err != nil {
			t.Errorf("openssl, password %q: %v\n%s", password, err, out)
		}
	}
}

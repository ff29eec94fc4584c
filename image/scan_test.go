package image

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func pemKeys(t *testing.T) map[string][]byte {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(ed, "test")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"PRIVATE KEY":         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"EC PRIVATE KEY":      pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"OPENSSH PRIVATE KEY": pem.EncodeToMemory(block),
	}
}

func TestScanTree(t *testing.T) {
	root := t.TempDir()
	keys := pemKeys(t)
	wg, _ := wgtypes.GeneratePrivateKey()
	writeFile(t, filepath.Join(root, "etc/ssl/private/k.pem"), string(keys["PRIVATE KEY"]), 0o600)
	writeFile(t, filepath.Join(root, "etc/ssh/ssh_host_ed25519_key"), string(keys["OPENSSH PRIVATE KEY"]), 0o600)
	writeFile(t, filepath.Join(root, "srv/app/ec.key"), "junk before\n"+string(keys["EC PRIVATE KEY"]), 0o600)
	writeFile(t, filepath.Join(root, "etc/ztwizard/wireguard/private.key"), wg.String()+"\n", 0o600)
	writeFile(t, filepath.Join(root, "etc/wireguard/x.conf"), "[Interface]\nPrivateKey = "+wg.String()+"\n[Peer]\nPublicKey = "+wg.PublicKey().String()+"\n", 0o600)
	// Not keys: an armour line without a body, a public key, a WireGuard
	// public key outside the WireGuard folders.
	writeFile(t, filepath.Join(root, "usr/bin/ssh-keygen"), "\x7fELF-----BEGIN OPENSSH PRIVATE KEY-----\n\x00\x01-----END", 0o755)
	writeFile(t, filepath.Join(root, "etc/wireguard/peer.conf"), "[Peer]\nPublicKey = "+wg.PublicKey().String()+"\n", 0o600)
	writeFile(t, filepath.Join(root, "etc/note"), wg.String(), 0o644)
	// A key exactly as a Debian package ships it (a library's test vector)
	// is not the site's secret; changed, it is.
	lib := "usr/lib/libtest.so"
	writeFile(t, filepath.Join(root, lib), "\x7fELF"+string(keys["PRIVATE KEY"]), 0o644)
	sum := md5.Sum([]byte("\x7fELF" + string(keys["PRIVATE KEY"])))
	writeFile(t, filepath.Join(root, "var/lib/dpkg/info/libtest.md5sums"), hex.EncodeToString(sum[:])+"  "+lib+"\n", 0o644)
	writeFile(t, filepath.Join(root, "usr/lib/libother.so"), "\x7fELF"+string(keys["EC PRIVATE KEY"]), 0o644)
	writeFile(t, filepath.Join(root, "var/lib/dpkg/info/libother.md5sums"), strings.Repeat("0", 32)+"  usr/lib/libother.so\n", 0o644)

	found, err := ScanTree(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/etc/ssh/ssh_host_ed25519_key: OPENSSH PRIVATE KEY",
		"/etc/ssl/private/k.pem: PRIVATE KEY",
		"/etc/wireguard/x.conf: WireGuard PrivateKey",
		"/etc/ztwizard/wireguard/private.key: WireGuard key",
		"/srv/app/ec.key: EC PRIVATE KEY",
		"/usr/lib/libother.so: EC PRIVATE KEY",
	}
	slices.Sort(found)
	if !slices.Equal(found, want) {
		t.Fatalf("found:\n%s\nwant:\n%s", strings.Join(found, "\n"), strings.Join(want, "\n"))
	}
}

func TestScanReaderAcrossWindows(t *testing.T) {
	key := pemKeys(t)["OPENSSH PRIVATE KEY"]
	var data bytes.Buffer
	data.Write(bytes.Repeat([]byte{0}, 8<<20-100)) // the key straddles the first window's end
	data.Write(key)
	data.Write(bytes.Repeat([]byte("x"), 1<<20))
	data.Write([]byte("-----BEGIN RSA PRIVATE KEY-----\nnot base64 at all\n"))
	found, err := ScanReader(&data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"offset 8388508: OPENSSH PRIVATE KEY"}
	if !slices.Equal(found, want) {
		t.Fatalf("found %v, want %v", found, want)
	}
}

package sshca

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"ztwizard/steps/testenv"
)

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyFields returns the key type and base64 blob of an authorized_keys line.
func keyFields(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}

func TestEncryptedPrivateKey(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKey(t)
	pass := []byte("correct horse battery")
	data, err := EncodePrivateKey(key, "ca@ztwizard", pass)
	if err != nil {
		t.Fatal(err)
	}
	path := testenv.WriteFile(t, dir, "ca", data)

	out := mustKeygen(t, dir, "-y", "-P", string(pass), "-f", path)
	if got, want := keyFields(out), keyFields(PublicKeyLine(pub, "")); got != want {
		t.Errorf("ssh-keygen -y = %q, want %q", got, want)
	}
	for _, wrong := range []string{"wrong", ""} {
		if out, errOut, code := keygen(t, dir, "-y", "-P", wrong, "-f", path); code == 0 {
			t.Errorf("ssh-keygen -y -P %q opened the key: %s%s", wrong, out, errOut)
		}
	}

	if _, err := DecodePrivateKey(data, nil); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("no passphrase: %v, want ErrPassphraseRequired", err)
	}
	if _, err := DecodePrivateKey(data, []byte("wrong")); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("wrong passphrase: %v, want ErrBadPassphrase", err)
	}
	got, err := DecodePrivateKey(data, pass)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(got) {
		t.Error("decoded key differs")
	}

	block, _ := pem.Decode(data)
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" {
		t.Fatalf("not an OPENSSH PRIVATE KEY PEM block: %q", data)
	}
	var hdr struct {
		Cipher, KDF string
		Rest        []byte `ssh:"rest"`
	}
	if err := ssh.Unmarshal(bytes.TrimPrefix(block.Bytes, []byte("openssh-key-v1\x00")), &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr.Cipher != "aes256-ctr" || hdr.KDF != "bcrypt" {
		t.Errorf("cipher %q kdf %q, want aes256-ctr bcrypt", hdr.Cipher, hdr.KDF)
	}
	seed := key.Seed()
	for _, secret := range [][]byte{seed, []byte(hex.EncodeToString(seed)), []byte(base64.StdEncoding.EncodeToString(seed)[:40])} {
		if bytes.Contains(data, secret) || bytes.Contains(block.Bytes, secret) {
			t.Errorf("encrypted file contains the seed (%q)", secret)
		}
	}
	if bytes.Contains([]byte(data), []byte("ca@ztwizard")) || bytes.Contains(block.Bytes, []byte("ca@ztwizard")) {
		t.Error("comment stored in the clear")
	}
}

func TestUnencryptedPrivateKey(t *testing.T) {
	dir := t.TempDir()
	key, pub := newKey(t)
	data, err := EncodePrivateKey(key, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	path := testenv.WriteFile(t, dir, "key", data)
	out := mustKeygen(t, dir, "-y", "-P", "", "-f", path)
	if got, want := keyFields(out), keyFields(PublicKeyLine(pub, "")); got != want {
		t.Errorf("ssh-keygen -y = %q, want %q", got, want)
	}
	for _, pass := range [][]byte{nil, []byte("ignored")} {
		got, err := DecodePrivateKey(data, pass)
		if err != nil {
			t.Fatal(err)
		}
		if !key.Equal(got) {
			t.Error("decoded key differs")
		}
	}
	if _, err := EncodePrivateKey(nil, "", nil); err == nil {
		t.Error("nil key encoded")
	}
	if _, err := DecodePrivateKey([]byte("not a key"), nil); err == nil || !strings.HasPrefix(err.Error(), "sshca: decode private key: ") {
		t.Errorf("garbage: %v", err)
	}
}

func TestDecodeSSHKeygenKey(t *testing.T) {
	dir := t.TempDir()
	mustKeygen(t, dir, "-q", "-t", "ed25519", "-N", "s3cret", "-C", "made-by-keygen", "-f", "k")
	data := readFile(t, filepath.Join(dir, "k"))
	want, _, _, _, err := ssh.ParseAuthorizedKey(readFile(t, filepath.Join(dir, "k.pub")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodePrivateKey(data, nil); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("no passphrase: %v, want ErrPassphraseRequired", err)
	}
	if _, err := DecodePrivateKey(data, []byte("nope")); !errors.Is(err, ErrBadPassphrase) {
		t.Errorf("wrong passphrase: %v, want ErrBadPassphrase", err)
	}
	key, err := DecodePrivateKey(data, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := key.(ed25519.PrivateKey); !ok {
		t.Errorf("decoded %T, want ed25519.PrivateKey", key)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub.Marshal(), want.Marshal()) {
		t.Error("public key differs from ssh-keygen's")
	}
}

func TestPublicKeyLine(t *testing.T) {
	dir := t.TempDir()
	_, pub := newKey(t)
	for _, tt := range []struct{ comment, want string }{
		{"", ""},
		{"alice@laptop", "alice@laptop"},
		{" two\nlines\r\x00 ", "two lines"},
	} {
		line := PublicKeyLine(pub, tt.comment)
		if !strings.HasPrefix(line, "ssh-ed25519 AAAA") || !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 {
			t.Errorf("PublicKeyLine(%q) = %q", tt.comment, line)
		}
		got, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil || len(rest) != 0 || comment != tt.want || !bytes.Equal(got.Marshal(), pub.Marshal()) {
			t.Errorf("PublicKeyLine(%q) = %q: parsed comment %q rest %q err %v", tt.comment, line, comment, rest, err)
		}
	}
	path := testenv.WriteFile(t, dir, "k.pub", []byte(PublicKeyLine(pub, "alice@laptop")))
	out := mustKeygen(t, dir, "-l", "-f", path)
	if f := strings.Fields(out); len(f) < 3 || f[1] != ssh.FingerprintSHA256(pub) || f[2] != "alice@laptop" {
		t.Errorf("ssh-keygen -l = %q", out)
	}
}

func TestKnownHostsLine(t *testing.T) {
	dir := t.TempDir()
	ca, caPub := newKey(t)
	line := KnownHostsLine(caPub, []string{"*.example.com", "10.0.0.5"})
	want := "@cert-authority *.example.com,10.0.0.5 " + PublicKeyLine(caPub, "")
	if line != want {
		t.Fatalf("KnownHostsLine = %q, want %q", line, want)
	}
	path := testenv.WriteFile(t, dir, "known_hosts", []byte(line))

	out := mustKeygen(t, dir, "-F", "web1.example.com", "-f", path)
	if !strings.Contains(out, "found: line 1 CA") {
		t.Errorf("ssh-keygen -F web1.example.com: %q", out)
	}
	if out, _, code := keygen(t, dir, "-F", "web1.other.org", "-f", path); code == 0 {
		t.Errorf("ssh-keygen -F web1.other.org matched: %q", out)
	}

	// knownhosts checks validity against the real clock, so sign at time.Now.
	_, hostPub := newKey(t)
	cert, err := SignHost(ca, Request{Key: hostPub, KeyID: "web1", Principals: []string{"web1.example.com"}, Validity: time.Hour, Serial: 9}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	check, err := knownhosts.New(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 22}
	if err := check("web1.example.com:22", addr, cert); err != nil {
		t.Errorf("host certificate rejected: %v", err)
	}
	if err := check("web2.example.com:22", addr, cert); err == nil {
		t.Error("host certificate accepted for a name it does not carry")
	}

	for _, bad := range [][]string{nil, {}, {""}, {"a b"}, {"a,b"}, {"!"}} {
		if got := KnownHostsLine(caPub, bad); got != "" {
			t.Errorf("KnownHostsLine(%q) = %q, want empty", bad, got)
		}
	}
	if got := KnownHostsLine(caPub, []string{"ok.example", "bad pattern", "[10.0.0.5]:2222", "!evil.example"}); !strings.HasPrefix(got, "@cert-authority ok.example,[10.0.0.5]:2222,!evil.example ssh-ed25519 ") {
		t.Errorf("invalid pattern not dropped: %q", got)
	}
}

package sshca

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/testenv"
)

// revoked runs ssh-keygen -Q against a KRL and reports whether the key or
// certificate in file is revoked.
func revoked(t *testing.T, dir, krl, file string) bool {
	t.Helper()
	out, errOut, code := keygen(t, dir, "-Q", "-f", krl, file)
	switch {
	case code == 0 && strings.HasSuffix(strings.TrimSpace(out), ": ok"):
		return false
	case code != 0 && strings.HasSuffix(strings.TrimSpace(out), ": REVOKED"):
		return true
	}
	t.Fatalf("ssh-keygen -Q -f %s %s: exit %d: %s%s", krl, file, code, out, errOut)
	return false
}

func TestKRL(t *testing.T) {
	dir := t.TempDir()
	ca, caPub := newKey(t)
	otherCA, _ := newKey(t)
	testenv.WriteFile(t, dir, "ca.pub", []byte(PublicKeyLine(caPub, "ca")))

	files := map[string]string{}
	sign := func(name string, signer crypto.Signer, keyID string, serial uint64, pub ssh.PublicKey) {
		t.Helper()
		c, err := SignUser(signer, Request{Key: pub, KeyID: keyID, Principals: []string{"alice"}, Validity: time.Hour, Serial: serial}, testNow)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = testenv.WriteFile(t, dir, name+"-cert.pub", []byte(CertLine(c, name)))
	}
	_, k1 := newKey(t)
	_, k2 := newKey(t)
	_, k3 := newKey(t)
	_, k4 := newKey(t)
	_, k5 := newKey(t)
	_, k6 := newKey(t)
	_, revokedKey := newKey(t)
	_, revokedKey2 := newKey(t)
	_, plainKey := newKey(t)
	sign("by-serial", ca, "alice@laptop", 100, k1)
	sign("by-key-id", ca, "bob@laptop", 101, k2)
	sign("valid", ca, "carol@laptop", 102, k3)
	sign("other-ca-same-serial", otherCA, "dave@laptop", 100, k4)
	sign("other-ca-same-id", otherCA, "bob@laptop", 104, k5)
	sign("any-ca-id", otherCA, "mallory", 105, k6)
	sign("cert-of-revoked-key", ca, "erin@laptop", 103, revokedKey)
	files["revoked-key"] = testenv.WriteFile(t, dir, "revoked-key.pub", []byte(PublicKeyLine(revokedKey, "erin")))
	files["revoked-key-2"] = testenv.WriteFile(t, dir, "revoked-key-2.pub", []byte(PublicKeyLine(revokedKey2, "grace")))
	files["plain-key"] = testenv.WriteFile(t, dir, "plain-key.pub", []byte(PublicKeyLine(plainKey, "frank")))

	krl := KRL{
		Version:   7,
		Generated: testNow,
		Comment:   "ztwizard test",
		Certs: []CertRevocations{
			{CA: caPub, Serials: []uint64{100}, KeyIDs: []string{"bob@laptop"}},
			{KeyIDs: []string{"mallory"}},
		},
		Keys: []ssh.PublicKey{revokedKey2, revokedKey},
	}
	krlPath := testenv.WriteFile(t, dir, "krl.bin", krl.Marshal())
	want := map[string]bool{
		"by-serial":            true,
		"by-key-id":            true,
		"valid":                false,
		"other-ca-same-serial": false,
		"other-ca-same-id":     false,
		"any-ca-id":            true,
		"cert-of-revoked-key":  true,
		"revoked-key":          true,
		"revoked-key-2":        true,
		"plain-key":            false,
	}
	for name, w := range want {
		if got := revoked(t, dir, krlPath, files[name]); got != w {
			t.Errorf("%s: revoked = %v, want %v", name, got, w)
		}
	}

	hash := sha256.Sum256(revokedKey.Marshal())
	for _, args := range [][]string{{"-Q", "-l", "-f", krlPath}, {"-Ql", "-f", krlPath}} {
		out := mustKeygen(t, dir, args...)
		for _, w := range []string{
			"# KRL version 7",
			"# Generated at 20250601T120000",
			"# Comment: ztwizard test",
			"# CA key ssh-ed25519 " + ssh.FingerprintSHA256(caPub),
			"serial: 100",
			"id: bob@laptop",
			"# Wildcard CA",
			"id: mallory",
			"hash: SHA256:" + hex.EncodeToString(hash[:]),
		} {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("ssh-keygen %q lacks %q:\n%s", args, w, out)
			}
		}
	}
}

// TestKRLMatchesSSHKeygen builds the same revocations with ssh-keygen -k and
// checks both KRLs give the same verdicts and, with the header's date copied
// over, the same bytes.
func TestKRLMatchesSSHKeygen(t *testing.T) {
	dir := t.TempDir()
	ca, caPub := newKey(t)
	caFile := testenv.WriteFile(t, dir, "ca.pub", []byte(PublicKeyLine(caPub, "ca")))
	_, revokedKey := newKey(t)

	var files []string
	for i, id := range []string{"alice", "bob", "carol", "dave"} {
		_, pub := newKey(t)
		c, err := SignUser(ca, Request{Key: pub, KeyID: id, Principals: []string{id}, Validity: time.Hour, Serial: uint64(1000 + 1000000*i)}, testNow)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, testenv.WriteFile(t, dir, id+"-cert.pub", []byte(CertLine(c, id))))
	}
	files = append(files, testenv.WriteFile(t, dir, "revoked.pub", []byte(PublicKeyLine(revokedKey, ""))))

	spec := fmt.Sprintf("serial: 1000\nserial: 3001000\nid: bob\nhash: %s\n", ssh.FingerprintSHA256(revokedKey))
	specFile := testenv.WriteFile(t, dir, "spec.txt", []byte(spec))
	refPath := filepath.Join(dir, "ref.krl")
	mustKeygen(t, dir, "-k", "-z", "3", "-f", refPath, "-s", caFile, specFile)
	ref := readFile(t, refPath)

	krl := KRL{
		Version:   3,
		Generated: time.Unix(int64(binary.BigEndian.Uint64(ref[20:28])), 0),
		Certs:     []CertRevocations{{CA: caPub, Serials: []uint64{3001000, 1000}, KeyIDs: []string{"bob"}}},
		Keys:      []ssh.PublicKey{revokedKey},
	}
	ours := krl.Marshal()
	oursPath := testenv.WriteFile(t, dir, "ours.krl", ours)
	for _, f := range files {
		if a, b := revoked(t, dir, refPath, f), revoked(t, dir, oursPath, f); a != b {
			t.Errorf("%s: ssh-keygen KRL revoked=%v, ours revoked=%v", filepath.Base(f), a, b)
		}
	}
	if !bytes.Equal(ours, ref) {
		t.Errorf("KRL bytes differ from ssh-keygen -k:\nours %x\nref  %x", ours, ref)
	}
}

func TestKRLDeterministic(t *testing.T) {
	_, ca1 := newKey(t)
	_, ca2 := newKey(t)
	_, k1 := newKey(t)
	_, k2 := newKey(t)
	a := KRL{Version: 1, Generated: testNow, Comment: "c",
		Certs: []CertRevocations{
			{CA: ca1, Serials: []uint64{5, 3, 9, 3, 0}, KeyIDs: []string{"b", "a"}},
			{CA: ca2, Serials: []uint64{1}},
			{CA: ca1, KeyIDs: []string{"c", "a"}},
		},
		Keys: []ssh.PublicKey{k1, k2, k1},
	}
	b := KRL{Version: 1, Generated: testNow, Comment: "c",
		Certs: []CertRevocations{
			{CA: ca2, Serials: []uint64{1}},
			{CA: ca1, Serials: []uint64{9, 5, 3}, KeyIDs: []string{"c", "b", "a"}},
			{CA: ca1},
		},
		Keys: []ssh.PublicKey{k2, k1},
	}
	ma, mb := a.Marshal(), b.Marshal()
	if !bytes.Equal(ma, mb) {
		t.Fatalf("equivalent KRLs marshal differently:\n%x\n%x", ma, mb)
	}
	if !bytes.Equal(ma, a.Marshal()) {
		t.Fatal("Marshal is not repeatable")
	}

	wantHeader := []byte("SSHKRL\n\x00")
	wantHeader = binary.BigEndian.AppendUint32(wantHeader, 1)
	wantHeader = binary.BigEndian.AppendUint64(wantHeader, 1)
	wantHeader = binary.BigEndian.AppendUint64(wantHeader, uint64(testNow.Unix()))
	wantHeader = binary.BigEndian.AppendUint64(wantHeader, 0)
	wantHeader = append(wantHeader, 0, 0, 0, 0, 0, 0, 0, 1, 'c')
	if !bytes.HasPrefix(ma, wantHeader) {
		t.Errorf("header %x, want %x", ma[:len(wantHeader)], wantHeader)
	}

	ca, caPub := newKey(t)
	c, err := SignUser(ca, Request{Key: k1, KeyID: "k1", Principals: []string{"alice"}, Validity: time.Hour, Serial: 1}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	byCert := KRL{Keys: []ssh.PublicKey{c}, Certs: []CertRevocations{{CA: caPub, Serials: []uint64{0}}}}
	if !bytes.Equal(byCert.Marshal(), (&KRL{Keys: []ssh.PublicKey{k1}}).Marshal()) {
		t.Error("a certificate in Keys is not revoked by its plain key, or serial 0 was written")
	}

	empty := (&KRL{}).Marshal()
	if len(empty) != len(wantHeader)-1 {
		t.Errorf("empty KRL is %d bytes: %x", len(empty), empty)
	}
	dir := t.TempDir()
	_, pub := newKey(t)
	path := testenv.WriteFile(t, dir, "empty.krl", empty)
	if revoked(t, dir, path, testenv.WriteFile(t, dir, "k.pub", []byte(PublicKeyLine(pub, "")))) {
		t.Error("empty KRL revokes a key")
	}
}

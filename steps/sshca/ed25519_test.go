package sshca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestEdSignerMatchesStdlib: edSigner's signatures are crypto/ed25519's,
// byte for byte, over many keys and messages of every length up to 300
// bytes (Ed25519 is deterministic), and they verify.
func TestEdSignerMatchesStdlib(t *testing.T) {
	for i := range 300 {
		seed := sha256.Sum256(fmt.Appendf(nil, "seed %d", i))
		key := ed25519.NewKeyFromSeed(seed[:])
		msg := make([]byte, i)
		rand.Read(msg)
		want := ed25519.Sign(key, msg)
		got, err := edSigner(key).Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("key %d, %d-byte message: signature %x, crypto/ed25519 gives %x", i, len(msg), got, want)
		}
		if !ed25519.Verify(key.Public().(ed25519.PublicKey), msg, got) {
			t.Fatalf("key %d: the signature does not verify", i)
		}
	}
}

func TestEdSignerRefuses(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := edSigner(key).Sign(nil, []byte("m"), crypto.SHA256); err == nil {
		t.Error("a hashed message was signed")
	}
	if _, err := edSigner(key[:40]).Sign(nil, []byte("m"), crypto.Hash(0)); err == nil {
		t.Error("a short key signed")
	}
	// A key whose public half is another key's.
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mixed := append(bytes.Clone(key[:ed25519.SeedSize]), other[ed25519.SeedSize:]...)
	if sig, err := edSigner(mixed).Sign(nil, []byte("m"), crypto.Hash(0)); err == nil {
		t.Errorf("a key with another's public half signed: %x", sig)
	}
}

// TestCAKeyEd25519: an Ed25519 CA key signs through edSigner; other keys
// sign as they are.
func TestCAKeyEd25519(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := caKey(key).(edSigner); !ok {
		t.Errorf("an Ed25519 CA key signs as %T, not through edSigner", caKey(key))
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got := caKey(ec); got != crypto.Signer(ec) {
		t.Errorf("an ECDSA CA key became %T", got)
	}
}

package sshca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"io"

	"filippo.io/edwards25519"
)

// edSigner signs with an Ed25519 key as crypto/ed25519 does (RFC 8032, the
// same bytes), but finds the points r·B and s·B by the variable-base
// multiplication. crypto/ed25519's fixed-base one first fills a table of
// the base point's multiples: 256 field inversions that cost a new process
// about 1.2 ms before its first signature, ten times this whole Sign. A
// process of ztwizard signs one certificate, or a few, so the table never
// pays for itself. The multiplication is constant time, like the other.
type edSigner ed25519.PrivateKey

// Public returns the key's public half.
func (k edSigner) Public() crypto.PublicKey {
	return ed25519.PrivateKey(k).Public()
}

// Sign signs message itself (an Ed25519 signature hashes internally): opts
// must ask for no hash.
func (k edSigner) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.Hash(0) {
		return nil, errors.New("sshca: ed25519: the message must not be hashed first")
	}
	if len(k) != ed25519.PrivateKeySize {
		return nil, errors.New("sshca: ed25519: bad private key length")
	}
	h := sha512.Sum512(k[:ed25519.SeedSize])
	s, err := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	if err != nil {
		return nil, err
	}
	// As crypto/ed25519 does, refuse a key whose public half is not its
	// seed's: a signature made with it would verify under no key.
	B := edwards25519.NewGeneratorPoint()
	if subtle.ConstantTimeCompare(new(edwards25519.Point).ScalarMult(s, B).Bytes(), k[ed25519.SeedSize:]) != 1 {
		return nil, errors.New("sshca: ed25519: the private key's public half does not match its seed")
	}
	d := sha512.New()
	d.Write(h[32:])
	d.Write(message)
	var digest [sha512.Size]byte
	r, err := new(edwards25519.Scalar).SetUniformBytes(d.Sum(digest[:0]))
	if err != nil {
		return nil, err
	}
	R := new(edwards25519.Point).ScalarMult(r, B).Bytes()
	d.Reset()
	d.Write(R)
	d.Write(k[ed25519.SeedSize:])
	d.Write(message)
	c, err := new(edwards25519.Scalar).SetUniformBytes(d.Sum(digest[:0]))
	if err != nil {
		return nil, err
	}
	S := new(edwards25519.Scalar).MultiplyAdd(c, s, r)
	return append(R, S.Bytes()...), nil
}

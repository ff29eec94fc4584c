package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/youmark/pkcs8"
)

// KeyType names a key algorithm and size the CA can generate and use.
type KeyType string

// The supported key types.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	Ed25519   KeyType = "ed25519"
	RSA3072   KeyType = "rsa-3072"
	RSA4096   KeyType = "rsa-4096"
)

// KeyTypes returns every supported key type, ECDSA P-256 first.
func KeyTypes() []KeyType {
	return []KeyType{ECDSAP256, ECDSAP384, Ed25519, RSA3072, RSA4096}
}

// ParseKeyType returns the KeyType named s, or an error naming s and
// listing the valid names.
func ParseKeyType(s string) (KeyType, error) {
	names := make([]string, 0, len(KeyTypes()))
	for _, t := range KeyTypes() {
		if string(t) == s {
			return t, nil
		}
		names = append(names, string(t))
	}
	return "", fmt.Errorf("pki: unknown key type %q (valid: %s)", s, strings.Join(names, ", "))
}

// GenerateKey creates a new private key of type t using crypto/rand.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	var (
		key crypto.Signer
		err error
	)
	switch t {
	case ECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case RSA3072:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		_, err = ParseKeyType(string(t))
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("pki: generate %s key: %w", t, err)
	}
	return key, nil
}

// PEM block types for private keys.
const (
	pemPrivateKey          = "PRIVATE KEY"
	pemEncryptedPrivateKey = "ENCRYPTED PRIVATE KEY"
)

// Errors returned (wrapped) by DecodeKeyPEM for encrypted keys.
var (
	// ErrPassphraseRequired means the key is encrypted and no passphrase was given.
	ErrPassphraseRequired = errors.New("passphrase required")
	// ErrBadPassphrase means the passphrase does not decrypt the key.
	ErrBadPassphrase = errors.New("wrong passphrase")
)

// keyEncryption protects encrypted private keys: PBES2 with
// PBKDF2-HMAC-SHA256 (600,000 iterations, 16-byte salt) and AES-256-CBC,
// which OpenSSL 1.1 and 3 read.
var keyEncryption = &pkcs8.Opts{
	Cipher: pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{
		SaltSize:       16,
		IterationCount: 600_000,
		HMACHash:       crypto.SHA256,
	},
}

// EncodeKeyPEM encodes key as a PKCS#8 "PRIVATE KEY" PEM block or, when
// passphrase is non-empty, as an encrypted PKCS#8 "ENCRYPTED PRIVATE KEY"
// block (PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC).
func EncodeKeyPEM(key crypto.Signer, passphrase []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("pki: encode key: nil key")
	}
	if len(passphrase) == 0 {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("pki: encode key: %w", err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
	}
	der, err := pkcs8.MarshalPrivateKey(key, passphrase, keyEncryption)
	if err != nil {
		return nil, fmt.Errorf("pki: encrypt key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemEncryptedPrivateKey, Bytes: der}), nil
}

// DecodeKeyPEM decodes the first private key PEM block in data, as written
// by EncodeKeyPEM. The passphrase is used only for an encrypted key; errors
// for an encrypted key wrap ErrPassphraseRequired or ErrBadPassphrase.
func DecodeKeyPEM(data, passphrase []byte) (crypto.Signer, error) {
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		var (
			key any
			err error
		)
		switch block.Type {
		case pemPrivateKey:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case pemEncryptedPrivateKey:
			key, err = decryptPKCS8(block.Bytes, passphrase)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: decode key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("pki: decode key: unsupported key type %T", key)
		}
		return signer, nil
	}
	return nil, errors.New("pki: decode key: no PRIVATE KEY or ENCRYPTED PRIVATE KEY PEM block")
}

// decryptPKCS8 parses an encrypted PKCS#8 key.
func decryptPKCS8(der, passphrase []byte) (any, error) {
	if len(passphrase) == 0 {
		return nil, ErrPassphraseRequired
	}
	key, _, err := pkcs8.ParsePrivateKey(der, passphrase)
	if err != nil {
		// pkcs8 reports a failed decryption only by this message.
		if strings.Contains(err.Error(), "incorrect password") {
			return nil, ErrBadPassphrase
		}
		return nil, err
	}
	return key, nil
}

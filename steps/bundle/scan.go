package bundle

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// PrivateKeysIn finds every PEM private key in data (PKCS#8, SEC 1,
// PKCS#1, OpenSSH), wherever it sits, and returns their public keys, for
// the scans that prove what a bundle, a request or a node's tree holds. A
// private key it cannot read (encrypted, damaged) is an error: a scan must
// not pass over what it cannot see.
func PrivateKeysIn(data []byte) ([]crypto.PublicKey, error) {
	var out []crypto.PublicKey
	for rest := data; ; {
		i := indexPEM(rest)
		if i < 0 {
			return out, nil
		}
		block, next := pem.Decode(rest[i:])
		if block == nil {
			rest = rest[i+len("-----BEGIN"):]
			continue
		}
		rest = next
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "OPENSSH PRIVATE KEY":
			key, err = ssh.ParseRawPrivateKey(pem.EncodeToMemory(block))
		case "ENCRYPTED PRIVATE KEY":
			err = fmt.Errorf("an encrypted private key")
		default:
			continue
		}
		if err != nil {
			return out, fmt.Errorf("scan: a %s block: %w", block.Type, err)
		}
		if p, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			out = append(out, p.Public())
		} else {
			return out, fmt.Errorf("scan: a %s block of type %T", block.Type, key)
		}
	}
}

// indexPEM finds the next PEM begin line.
func indexPEM(b []byte) int { return bytes.Index(b, []byte("-----BEGIN")) }

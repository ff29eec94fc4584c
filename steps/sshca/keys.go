// Package sshca is ztwizard's SSH certificate authority as pure code: it
// generates and encodes CA keys, signs short-lived user and host certificates
// with named principals, and serialises key revocation lists (KRLs) and
// known_hosts lines. It never touches the filesystem; the caller supplies the
// clock.
package sshca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/crypto/ssh"
)

// ErrPassphraseRequired is wrapped by DecodePrivateKey when the key is
// encrypted and no passphrase was given.
var ErrPassphraseRequired = errors.New("passphrase required for encrypted private key")

// ErrBadPassphrase is wrapped by DecodePrivateKey when the passphrase does not
// decrypt the key.
var ErrBadPassphrase = errors.New("incorrect passphrase")

// GenerateKey returns a new Ed25519 key, the type used for CA keys.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshca: generate ed25519 key: %w", err)
	}
	return key, nil
}

// EncodePrivateKey returns key as an OpenSSH "OPENSSH PRIVATE KEY" PEM file.
// With a non-empty passphrase the key is encrypted with aes256-ctr under a
// bcrypt-derived key, as ssh-keygen does.
func EncodePrivateKey(key crypto.Signer, comment string, passphrase []byte) ([]byte, error) {
	if key == nil {
		return nil, errors.New("sshca: encode private key: no key")
	}
	var block *pem.Block
	var err error
	if len(passphrase) == 0 {
		block, err = ssh.MarshalPrivateKey(key, comment)
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(key, comment, passphrase)
	}
	if err != nil {
		return nil, fmt.Errorf("sshca: encode private key: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// DecodePrivateKey parses a PEM private key (OpenSSH format or the legacy
// PEM formats). An encrypted key needs its passphrase: a missing one yields an
// error wrapping ErrPassphraseRequired, a wrong one ErrBadPassphrase. As with
// ssh-keygen, a passphrase given for an unencrypted key is ignored.
func DecodePrivateKey(data, passphrase []byte) (crypto.Signer, error) {
	raw, err := ssh.ParseRawPrivateKey(data)
	if _, ok := errors.AsType[*ssh.PassphraseMissingError](err); ok {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("sshca: decode private key: %w", ErrPassphraseRequired)
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase(data, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("sshca: decode private key: %w", ErrBadPassphrase)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sshca: decode private key: %w", err)
	}
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case crypto.Signer:
		return k, nil
	}
	return nil, fmt.Errorf("sshca: decode private key: %T cannot sign", raw)
}

// PublicKeyLine returns pub in authorized_keys format, "ssh-ed25519 AAAA...
// comment\n". Runs of whitespace in the comment collapse to one space and
// control characters are dropped, so the result is always a single line.
func PublicKeyLine(pub ssh.PublicKey, comment string) string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n")
	comment = strings.Join(strings.Fields(comment), " ")
	comment = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, comment)
	if comment != "" {
		line += " " + comment
	}
	return line + "\n"
}

// CertLine returns the certificate as the single line of a KEY-cert.pub file.
func CertLine(c *ssh.Certificate, comment string) string {
	return PublicKeyLine(c, comment)
}

// KnownHostsLine returns a known_hosts line trusting hostCA for host
// certificates of hosts matching patterns:
// "@cert-authority pattern1,pattern2 ssh-ed25519 AAAA...\n". Patterns that
// fail ValidHostPattern are dropped; if none remain the result is "", so a
// bad pattern list never widens trust.
func KnownHostsLine(hostCA ssh.PublicKey, patterns []string) string {
	var ok []string
	for _, p := range patterns {
		if ValidHostPattern(p) == nil {
			ok = append(ok, p)
		}
	}
	if len(ok) == 0 || hostCA == nil {
		return ""
	}
	return "@cert-authority " + strings.Join(ok, ",") + " " + PublicKeyLine(hostCA, "")
}

// ValidHostPattern reports whether p is usable as one known_hosts host
// pattern: a host name or address, optionally with "*" and "?" wildcards, a
// leading "!" for negation, or the "[host]:port" form. Commas, whitespace
// and other characters that would break the line are rejected.
func ValidHostPattern(p string) error {
	body := strings.TrimPrefix(p, "!")
	if body == "" {
		return fmt.Errorf("host pattern %q is empty", p)
	}
	for _, r := range body {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune(".-_*?:[]", r):
		default:
			return fmt.Errorf("host pattern %q: character %q not allowed", p, r)
		}
	}
	return nil
}

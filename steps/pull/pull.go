// Package pull carries the CA's revocations to the nodes: the CA host
// publishes the signed CRL and the OpenSSH KRL (with a detached signature by
// the X.509 CA, since a KRL's own signature section is not checked by
// OpenSSH) into a folder nginx serves on its mesh address; each node fetches
// them, checks them against the CA certificate it has installed, refuses
// anything older than what it holds, and installs them atomically.
package pull

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/pki"
)

// The published files, in the folder nginx serves.
const (
	CRLName    = steps.PublishedCRL
	KRLName    = steps.PublishedKRL
	KRLSigName = steps.PublishedKRLSig
)

// MaxSize bounds what a node reads of a fetched file.
const MaxSize = 8 << 20

// sigPEM is the PEM type of the KRL's detached signature; sigContext is
// signed before the KRL's bytes, so the signature means nothing else.
const (
	sigPEM     = "ZTWIZARD KRL SIGNATURE"
	sigContext = "ztwizard krl signature v1\n"
)

// ErrNotFound is wrapped by Fetch when the CA host publishes no such file.
var ErrNotFound = errors.New("not published (HTTP 404)")

// ErrRefused is wrapped by every check that refuses a fetched file.
var ErrRefused = errors.New("refused")

func refused(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, a...)...)
}

// SignKRL returns the CA's detached signature of krl, PEM encoded.
func SignKRL(ca *pki.CA, krl []byte) ([]byte, error) {
	msg := append([]byte(sigContext), krl...)
	var sig []byte
	var err error
	if _, ok := ca.Key.Public().(ed25519.PublicKey); ok {
		sig, err = ca.Key.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		d := sha256.Sum256(msg)
		sig, err = ca.Key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("pull: sign the KRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: sigPEM, Bytes: sig}), nil
}

// VerifyKRL checks sig, SignKRL's output, over krl against the CA
// certificate ca.
func VerifyKRL(ca *x509.Certificate, krl, sig []byte) error {
	b, _ := pem.Decode(sig)
	if b == nil || b.Type != sigPEM {
		return refused("%s: no %s PEM block", KRLSigName, sigPEM)
	}
	msg := append([]byte(sigContext), krl...)
	d := sha256.Sum256(msg)
	ok := false
	switch pub := ca.PublicKey.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, d[:], b.Bytes)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], b.Bytes) == nil
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, msg, b.Bytes)
	}
	if !ok {
		return refused("the KRL's signature is not by the installed CA %q", ca.Subject.CommonName)
	}
	return nil
}

// KRLVersion reads the version from an OpenSSH KRL's header.
func KRLVersion(krl []byte) (uint64, error) {
	const magic = "SSHKRL\n\x00"
	rest, ok := bytes.CutPrefix(krl, []byte(magic))
	if !ok || len(rest) < 12 {
		return 0, refused("not an OpenSSH KRL")
	}
	return binary.BigEndian.Uint64(rest[4:12]), nil
}

// ParseCRL reads a PEM CRL.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "X509 CRL" {
		return nil, refused("no X509 CRL PEM block")
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, refused("CRL: %v", err)
	}
	return crl, nil
}

// CheckCRL checks a fetched CRL file against the CA certificate ca and
// the CRL file installed (nil: none), as CheckCRLs does with ca alone, and
// returns its first CRL.
func CheckCRL(ca *x509.Certificate, installed, fetched []byte, now time.Time) (*x509.RevocationList, error) {
	crls, err := CheckCRLs([]*x509.Certificate{ca}, installed, fetched, now)
	if err != nil {
		return nil, err
	}
	return crls[0], nil
}

// ParseCRLs reads every CRL of a PEM file: one per CA, two during a CA
// rotation's overlap. A block that is no CRL is an error.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	for i := 1; ; i++ {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			return nil, refused("block %d is a %s, not an X509 CRL", i, b.Type)
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, refused("CRL %d: %v", i, err)
		}
		out = append(out, crl)
	}
	if len(out) == 0 {
		return nil, refused("no X509 CRL PEM block")
	}
	return out, nil
}

// issuerOf returns the CA of trusted that signed crl, nil when none did.
func issuerOf(trusted []*x509.Certificate, crl *x509.RevocationList) *x509.Certificate {
	for _, ca := range trusted {
		if crl.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// CheckCRLs checks every CRL of a fetched file (one per CA: two during a
// rotation's overlap) against the CAs the node trusts and the CRL file
// installed (nil: none): each signed by one of trusted, not past its
// nextUpdate, and with a CRL number not lower than the installed CRL of
// the same CA. One CRL that fails refuses the whole file.
func CheckCRLs(trusted []*x509.Certificate, installed, fetched []byte, now time.Time) ([]*x509.RevocationList, error) {
	crls, err := ParseCRLs(fetched)
	if err != nil {
		return nil, err
	}
	var old []*x509.RevocationList
	if installed != nil {
		old, _ = ParseCRLs(installed) // an unreadable installed file holds nothing back
	}
	for i, crl := range crls {
		ca := issuerOf(trusted, crl)
		if ca == nil {
			return nil, refused("CRL %d (issuer %q) is not signed by the installed CA(s) %s", i+1, crl.Issuer.CommonName, names(trusted))
		}
		if !now.Before(crl.NextUpdate) {
			return nil, refused("CRL %d (issuer %q): its nextUpdate %s has passed", i+1, ca.Subject.CommonName, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, o := range old {
			if o.CheckSignatureFrom(ca) == nil && crl.Number.Cmp(o.Number) < 0 {
				return nil, refused("CRL %d (issuer %q): its number %s is lower than the installed one's %s", i+1, ca.Subject.CommonName, crl.Number, o.Number)
			}
		}
	}
	return crls, nil
}

// CheckKRL checks a fetched KRL: signed by ca (sig), and a version not
// lower than the installed one's (nil: none).
func CheckKRL(ca *x509.Certificate, installed, fetched, sig []byte) error {
	if err := VerifyKRL(ca, fetched, sig); err != nil {
		return err
	}
	v, err := KRLVersion(fetched)
	if err != nil {
		return err
	}
	if installed != nil {
		if old, err := KRLVersion(installed); err == nil && v < old {
			return refused("the KRL's version %d is lower than the installed one's %d", v, old)
		}
	}
	return nil
}

// CheckKRLs is CheckKRL with the signature by any of the CAs the node
// trusts (two during a rotation's overlap).
func CheckKRLs(trusted []*x509.Certificate, installed, fetched, sig []byte) error {
	for _, ca := range trusted {
		if VerifyKRL(ca, fetched, sig) == nil {
			return CheckKRL(ca, installed, fetched, sig)
		}
	}
	return refused("the KRL's signature is not by the installed CA(s) %s", names(trusted))
}

// names lists the CAs' common names, quoted.
func names(cas []*x509.Certificate) string {
	var out []string
	for _, c := range cas {
		out = append(out, strconv.Quote(c.Subject.CommonName))
	}
	return strings.Join(out, ", ")
}

// Publish writes the CRL, the KRL and its signature into dir (0644,
// atomically), for nginx to serve. The KRL is signed again only when it
// changed.
func Publish(dir string, ca *pki.CA, crl, krl []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pull: publish: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CRLName), crl, 0o644); err != nil {
		return fmt.Errorf("pull: publish: %w", err)
	}
	if krl == nil {
		return nil
	}
	same, err := atomicfile.Equal(filepath.Join(dir, KRLName), krl, 0o644)
	if err != nil {
		return fmt.Errorf("pull: publish: %w", err)
	}
	if same {
		if sig, err := os.ReadFile(filepath.Join(dir, KRLSigName)); err == nil && VerifyKRL(ca.Cert, krl, sig) == nil {
			return nil
		}
	}
	sig, err := SignKRL(ca, krl)
	if err != nil {
		return err
	}
	// The signature first: a node that fetches in between finds the old
	// KRL with a signature that fails, and keeps what it has.
	if err := atomicfile.WriteFile(filepath.Join(dir, KRLSigName), sig, 0o644); err != nil {
		return fmt.Errorf("pull: publish: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, KRLName), krl, 0o644); err != nil {
		return fmt.Errorf("pull: publish: %w", err)
	}
	return nil
}

// Fetch gets base/name over HTTP, at most MaxSize bytes.
func Fetch(ctx context.Context, client *http.Client, base, name string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+name, nil)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pull: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("pull: %s/%s: %w", base, name, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pull: %s/%s: HTTP %d", base, name, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("pull: %s/%s: %w", base, name, err)
	}
	if len(data) > MaxSize {
		return nil, refused("%s/%s is larger than %d bytes", base, name, MaxSize)
	}
	return data, nil
}

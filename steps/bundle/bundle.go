// Package bundle is what crosses between a node and the CA host of a fleet:
// the node's request (its public keys, a CSR per service, its SSH host key)
// going to the CA host, and the node's bundle (everything the node needs to
// build and apply its plan, signed by the site's CA, with a serial that only
// grows) coming back. It also keeps, on a node, the CA the node trusts and
// the serial of the last bundle it applied.
//
// A bundle file (N.ztb) is a JSON envelope:
//
//	{"format": "ztwizard-bundle", "version": 1,
//	 "algorithm": "ECDSA-SHA256",         // as x509.SignatureAlgorithm names it
//	 "payload": "<base64 of the payload JSON>",
//	 "signature": "<base64 of the CA's signature over those payload bytes>"}
//
// The signature is made with the CA key (any key type the CA supports:
// ECDSA P-256 with SHA-256, P-384 with SHA-384, Ed25519, RSA-PSS with
// SHA-256) and checked with the public key of the CA certificate the node
// trusts. The payload is Payload.
package bundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"ztwizard/steps/pki"
)

// Format names and versions of the files this package reads and writes.
const (
	BundleFormat  = "ztwizard-bundle"
	BundleVersion = 1
)

// ErrRefused is wrapped by every error that refuses a bundle: unreadable,
// tampered, signed by another CA, for another node, or a replay. Commands
// answer it with exit code 2.
var ErrRefused = errors.New("bundle refused")

func refused(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// Envelope is a bundle file as written: the payload and its signature.
type Envelope struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Algorithm string `json:"algorithm"`
	Payload   []byte `json:"payload"`
	Signature []byte `json:"signature"`
}

// Payload is what a bundle carries for one node.
type Payload struct {
	Format  string    `json:"format"`  // BundleFormat, again inside what is signed
	Version int       `json:"version"` // BundleVersion
	Site    string    `json:"site"`
	Node    string    `json:"node"`
	Serial  uint64    `json:"serial"` // per node, always greater than the last
	Created time.Time `json:"created"`
	// CAFingerprint is Fingerprint(CACert): what a node checks first.
	CAFingerprint string `json:"ca_fingerprint"`
	CACert        string `json:"ca_cert"` // PEM
	// SiteFile is the site file, canonical YAML: the node builds its plan
	// from it and the secrets, and installs it as /etc/ztwizard/site.yaml.
	SiteFile string `json:"site_file"`
	// PrivateKeys tells whether the bundle carries private keys (a node
	// whose keys were made on the CA host); a bundle that does is written
	// 0600.
	PrivateKeys bool    `json:"private_keys"`
	Secrets     Secrets `json:"secrets"`
}

// Secrets are the node's share of the site's secrets and public material.
// Private fields are empty for a node that made its own keys.
type Secrets struct {
	// CACerts holds every CA certificate the node is to trust (PEM), set
	// only when that is more than the CA that signed the bundle: during a
	// CA rotation, the old CA and the new. A node that applied such a
	// bundle accepts the next one from either (see TrustFor).
	CACerts   string                `json:"ca_certs,omitempty"`
	CRL       string                `json:"crl"`         // PEM
	SSHUserCA string                `json:"ssh_user_ca"` // public key line
	SSHHostCA string                `json:"ssh_host_ca"` // public key line
	KRL       []byte                `json:"krl"`         // OpenSSH KRL
	HostCert  string                `json:"ssh_host_cert,omitempty"`
	HostKey   string                `json:"ssh_host_key,omitempty"` // private, OpenSSH PEM
	Servers   map[string]ServerPair `json:"servers,omitempty"`      // by service
	// WireGuardKey is the node's private key (base64), when made on the
	// CA host.
	WireGuardKey string `json:"wireguard_key,omitempty"`
	// WireGuardPubs holds the public keys of the node and of its peers.
	WireGuardPubs map[string]string `json:"wireguard_public_keys"`
	// PresharedKeys holds the preshared keys of the node's own links.
	PresharedKeys map[string]string `json:"preshared_keys,omitempty"`
	// Addresses holds every node's mesh address.
	Addresses map[string]string `json:"addresses"`
}

// ServerPair is a service's certificate and, when made on the CA host, key.
type ServerPair struct {
	Cert string `json:"cert"`
	Key  string `json:"key,omitempty"`
}

// Fingerprint is the SHA-256 fingerprint of a certificate's DER encoding,
// written "SHA256:" and 64 lowercase hex digits.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// ParseFingerprint reads a fingerprint as Fingerprint writes it, or as
// `openssl x509 -noout -fingerprint -sha256` prints it (upper case, colons,
// with or without its "sha256 Fingerprint=" prefix).
func ParseFingerprint(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if i := strings.LastIndex(t, "="); i >= 0 {
		t = t[i+1:]
	}
	t = strings.TrimPrefix(t, "sha256:")
	t = strings.ReplaceAll(t, ":", "")
	if b, err := hex.DecodeString(t); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%q is not a SHA-256 fingerprint (want SHA256: and 64 hex digits, as `ztwizard ca fingerprint` prints)", s)
	}
	return "SHA256:" + t, nil
}

// algorithm is the signature algorithm a CA key signs bundles with.
func algorithm(pub crypto.PublicKey) (x509.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, nil
		}
		return 0, fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return x509.PureEd25519, nil
	case *rsa.PublicKey:
		return x509.SHA256WithRSAPSS, nil
	}
	return 0, fmt.Errorf("unsupported CA key type %T", pub)
}

// signPayload signs data with key as alg asks.
func signPayload(key crypto.Signer, alg x509.SignatureAlgorithm, data []byte) ([]byte, error) {
	switch alg {
	case x509.ECDSAWithSHA256:
		sum := sha256.Sum256(data)
		return key.Sign(rand.Reader, sum[:], crypto.SHA256)
	case x509.ECDSAWithSHA384:
		sum := sha512.Sum384(data)
		return key.Sign(rand.Reader, sum[:], crypto.SHA384)
	case x509.PureEd25519:
		return key.Sign(rand.Reader, data, crypto.Hash(0))
	case x509.SHA256WithRSAPSS:
		sum := sha256.Sum256(data)
		return key.Sign(rand.Reader, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	}
	return nil, fmt.Errorf("unsupported algorithm %s", alg)
}

// Sign fills p's format, version and CA fields from ca, signs it with the
// CA's key and returns the bundle file's bytes.
func Sign(p *Payload, ca *pki.CA) ([]byte, error) {
	alg, err := algorithm(ca.Cert.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	p.Format, p.Version = BundleFormat, BundleVersion
	p.CACert = string(pki.EncodeCertPEM(ca.Cert))
	p.CAFingerprint = Fingerprint(ca.Cert)
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	sig, err := signPayload(ca.Key, alg, data)
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	// Never hand out a signature that does not check.
	if err := ca.Cert.CheckSignature(alg, data, sig); err != nil {
		return nil, fmt.Errorf("bundle: sign: the CA key does not match the CA certificate: %w", err)
	}
	// One line: indenting would scan the whole base64 payload again.
	out, err := json.Marshal(Envelope{Format: BundleFormat, Version: BundleVersion, Algorithm: alg.String(), Payload: data, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("bundle: sign: %w", err)
	}
	return append(out, '\n'), nil
}

// Trust is what a node trusts a bundle by: the CA certificate it already
// holds, or, the first time, the CA's fingerprint.
type Trust struct {
	CACert *x509.Certificate // the CA the node trusts; nil the first time
	// Also are the other CAs the node trusts: during a CA rotation the
	// one the last bundle announced beside its signer.
	Also        []*x509.Certificate
	Fingerprint string // the fingerprint to trust the first time (ParseFingerprint's form)
	Node        string // the node this host is; "" accepts the bundle's (the first time)
	LastSerial  uint64 // the serial of the last bundle applied; 0 for none
}

// Open checks a bundle file and returns its payload: well formed, signed by
// the trusted CA (or, without one, by the CA whose certificate has the
// given fingerprint), for this node, newer than the last bundle applied,
// the CA certificate in force at now. Every refusal wraps ErrRefused.
func Open(data []byte, t Trust, now time.Time) (*Payload, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, refused("not a ztwizard bundle: %v", err)
	}
	if env.Format != BundleFormat {
		return nil, refused("not a ztwizard bundle (format %q)", env.Format)
	}
	if env.Version != BundleVersion {
		return nil, refused("bundle version %d; this ztwizard reads version %d", env.Version, BundleVersion)
	}
	var p Payload
	pd := json.NewDecoder(bytes.NewReader(env.Payload))
	pd.DisallowUnknownFields()
	if err := pd.Decode(&p); err != nil {
		return nil, refused("the payload is not readable: %v", err)
	}
	cert, err := pki.DecodeCertPEM([]byte(p.CACert))
	if err != nil {
		return nil, refused("the CA certificate in the bundle: %v", err)
	}
	switch {
	case t.CACert != nil:
		trusted := func(c *x509.Certificate) bool { return bytes.Equal(cert.Raw, c.Raw) }
		if !trusted(t.CACert) && !slices.ContainsFunc(t.Also, trusted) {
			return nil, refused("signed by another CA (%s) than the one this node trusts (%s)", Fingerprint(cert), Fingerprint(t.CACert))
		}
	case t.Fingerprint != "":
		if Fingerprint(cert) != t.Fingerprint {
			return nil, refused("signed by another CA (%s) than --ca-fingerprint %s", Fingerprint(cert), t.Fingerprint)
		}
	default:
		return nil, refused("this node trusts no CA yet: give the CA's fingerprint with --ca-fingerprint (on the CA host: ztwizard ca fingerprint)")
	}
	if !cert.IsCA {
		return nil, refused("the signing certificate is not a CA")
	}
	alg, err := algorithm(cert.PublicKey)
	if err != nil {
		return nil, refused("%v", err)
	}
	if env.Algorithm != alg.String() {
		return nil, refused("signature algorithm %q, but the CA signs with %s", env.Algorithm, alg)
	}
	if err := cert.CheckSignature(alg, env.Payload, env.Signature); err != nil {
		return nil, refused("the signature does not check against the CA %s: the bundle was changed or signed by another key", Fingerprint(cert))
	}
	if p.Format != BundleFormat || p.Version != BundleVersion {
		return nil, refused("payload format %q version %d", p.Format, p.Version)
	}
	if p.CAFingerprint != Fingerprint(cert) {
		return nil, refused("the payload names CA %s but carries %s", p.CAFingerprint, Fingerprint(cert))
	}
	if t.Node != "" && p.Node != t.Node {
		return nil, refused("the bundle is for node %q, this host is node %q", p.Node, t.Node)
	}
	if p.Serial <= t.LastSerial {
		return nil, refused("serial %d is not newer than %d, the last bundle applied here (an old bundle could bring back revoked material)", p.Serial, t.LastSerial)
	}
	if now.After(cert.NotAfter) {
		return nil, refused("the CA certificate expired at %s", cert.NotAfter.Format(time.RFC3339))
	}
	return &p, nil
}

// CA returns the payload's CA certificate (Open has checked it).
func (p *Payload) CA() (*x509.Certificate, error) {
	return pki.DecodeCertPEM([]byte(p.CACert))
}

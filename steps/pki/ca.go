// Package pki is ztwizard's private X.509 certificate authority for mutual
// TLS: key generation, a self-signed root, server and client leaf
// certificates, CRLs, and PEM/PKCS#8/PKCS#12 encoding.
//
// Everything here works in memory. The clock and the serial numbers are
// arguments, so callers decide how they are stored and tests are
// reproducible.
package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"time"
)

// Backdate is subtracted from the issuing time to get NotBefore, so that
// hosts whose clocks are slightly behind accept a fresh certificate.
const Backdate = 5 * time.Minute

// Subject is the distinguished name of a root CA. Empty fields are left out.
type Subject struct {
	CommonName, Organization, Country string
}

// CA is a certificate authority: its certificate and the matching key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// RandomSerial returns a positive serial number of 127 or 128 bits (127
// random bits with bit 126 always set) read from r, or from crypto/rand
// when r is nil.
func RandomSerial(r io.Reader) (*big.Int, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("pki: random serial: %w", err)
	}
	b[0] |= 0x40
	return new(big.Int).SetBytes(b), nil
}

// NewRoot creates a self-signed root CA for key, valid from now-Backdate to
// now+validity. It may sign leaf certificates only (path length 0).
func NewRoot(subj Subject, key crypto.Signer, validity time.Duration, now time.Time, serial *big.Int) (*CA, error) {
	wrap := func(err error) error { return fmt.Errorf("pki: new root %q: %w", subj.CommonName, err) }
	if key == nil {
		return nil, wrap(errors.New("nil key"))
	}
	if err := checkCommon(subj.CommonName, validity, serial); err != nil {
		return nil, wrap(err)
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, wrap(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: subj.CommonName, Organization: nonEmpty(subj.Organization), Country: nonEmpty(subj.Country)},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          ski,
	}
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, wrap(err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// IssueServer issues a TLS server certificate for pub with the given common
// name and subject alternative names; at least one DNS name or IP address
// is required. NotAfter is now+validity, clamped to the CA's NotAfter.
func (ca *CA) IssueServer(pub crypto.PublicKey, commonName string, dnsNames []string, ips []netip.Addr, validity time.Duration, now time.Time, serial *big.Int) (*x509.Certificate, error) {
	wrap := func(err error) error { return fmt.Errorf("pki: issue server %q: %w", commonName, err) }
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, wrap(errors.New("no DNS name or IP address"))
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, name := range dnsNames {
		if name == "" {
			return nil, wrap(errors.New("empty DNS name"))
		}
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	for _, ip := range ips {
		if !ip.IsValid() {
			return nil, wrap(errors.New("invalid IP address"))
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	cert, err := ca.issue(tmpl, pub, validity, now, serial)
	if err != nil {
		return nil, wrap(err)
	}
	return cert, nil
}

// IssueClient issues a TLS client certificate for pub with subject
// CN=commonName and, when organization is non-empty, O=organization.
// NotAfter is now+validity, clamped to the CA's NotAfter.
func (ca *CA) IssueClient(pub crypto.PublicKey, commonName, organization string, validity time.Duration, now time.Time, serial *big.Int) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: nonEmpty(organization)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cert, err := ca.issue(tmpl, pub, validity, now, serial)
	if err != nil {
		return nil, fmt.Errorf("pki: issue client %q: %w", commonName, err)
	}
	return cert, nil
}

// issue fills in the fields common to all leaves and signs tmpl.
func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, now time.Time, serial *big.Int) (*x509.Certificate, error) {
	if err := ca.check(now); err != nil {
		return nil, err
	}
	if err := checkCommon(tmpl.Subject.CommonName, validity, serial); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("nil public key")
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-Backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.SubjectKeyId = ski
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	return sign(tmpl, ca.Cert, pub, ca.Key)
}

// Revoked is one entry of a CRL: the certificate serial and when it was revoked.
type Revoked struct {
	Serial *big.Int
	At     time.Time
}

// CRL returns a DER certificate revocation list signed by the CA, listing
// revoked, with CRL number number, ThisUpdate now and NextUpdate
// now+validity clamped to the CA's NotAfter.
func (ca *CA) CRL(revoked []Revoked, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	wrap := func(err error) error { return fmt.Errorf("pki: CRL number %v: %w", number, err) }
	if err := ca.check(now); err != nil {
		return nil, wrap(err)
	}
	if number == nil || number.Sign() < 0 {
		return nil, wrap(errors.New("CRL number must be non-negative"))
	}
	if validity <= 0 {
		return nil, wrap(fmt.Errorf("validity %v must be positive", validity))
	}
	next := now.Add(validity)
	if next.After(ca.Cert.NotAfter) {
		next = ca.Cert.NotAfter
	}
	tmpl := &x509.RevocationList{Number: number, ThisUpdate: now, NextUpdate: next}
	for _, r := range revoked {
		if r.Serial == nil || r.Serial.Sign() <= 0 {
			return nil, wrap(fmt.Errorf("revoked serial %v must be positive", r.Serial))
		}
		if r.At.IsZero() {
			return nil, wrap(fmt.Errorf("revoked serial %x: no revocation time", r.Serial))
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.At})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, wrap(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, wrap(err)
	}
	if err := checkSignatureAlgorithm(crl.SignatureAlgorithm); err != nil {
		return nil, wrap(err)
	}
	return der, nil
}

// check reports whether the CA is complete and still valid at now.
func (ca *CA) check(now time.Time) error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return errors.New("CA certificate or key missing")
	}
	if !now.Before(ca.Cert.NotAfter) {
		return fmt.Errorf("CA %q expired at %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkCommon validates the arguments every certificate needs.
func checkCommon(commonName string, validity time.Duration, serial *big.Int) error {
	switch {
	case commonName == "":
		return errors.New("empty common name")
	case serial == nil || serial.Sign() <= 0:
		return fmt.Errorf("serial %v must be positive", serial)
	case validity <= 0:
		return fmt.Errorf("validity %v must be positive", validity)
	}
	return nil
}

// sign creates the certificate and parses it back.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := checkSignatureAlgorithm(cert.SignatureAlgorithm); err != nil {
		return nil, err
	}
	return cert, nil
}

// checkSignatureAlgorithm rejects signatures weaker than SHA-256.
func checkSignatureAlgorithm(alg x509.SignatureAlgorithm) error {
	switch alg {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512,
		x509.PureEd25519:
		return nil
	}
	return fmt.Errorf("weak or unknown signature algorithm %v", alg)
}

// subjectKeyID is the RFC 5280 (4.2.1.2, method 1) key identifier: the
// SHA-1 hash of the subjectPublicKey BIT STRING contents.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

// nonEmpty returns []string{s}, or nil when s is empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

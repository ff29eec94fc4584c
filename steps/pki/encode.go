package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"software.sslmate.com/src/go-pkcs12"
)

// EncodeCertPEM returns c as a "CERTIFICATE" PEM block.
func EncodeCertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// DecodeCertPEM parses the first "CERTIFICATE" PEM block in data.
func DecodeCertPEM(data []byte) (*x509.Certificate, error) {
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: decode certificate: %w", err)
		}
		return cert, nil
	}
	return nil, errors.New("pki: decode certificate: no CERTIFICATE PEM block")
}

// EncodeCRLPEM returns a DER CRL as an "X509 CRL" PEM block.
func EncodeCRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
}

// PKCS12 bundles cert, its key and the chain (usually the CA certificate)
// into a password-protected PKCS#12 file using go-pkcs12's Modern encoder
// (PBES2 with AES-256-CBC, HMAC-SHA-256 MAC), as browsers and OpenSSL 3 import.
func PKCS12(cert *x509.Certificate, key crypto.Signer, chain []*x509.Certificate, password string) ([]byte, error) {
	if cert == nil || key == nil {
		return nil, errors.New("pki: PKCS#12: nil certificate or key")
	}
	wrap := func(err error) error { return fmt.Errorf("pki: PKCS#12 for %q: %w", cert.Subject.CommonName, err) }
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, wrap(errors.New("key does not match the certificate"))
	}
	pfx, err := pkcs12.Modern.Encode(key, cert, chain, password)
	if err != nil {
		return nil, wrap(err)
	}
	return pfx, nil
}

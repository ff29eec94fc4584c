package pull

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/pki"
)

// Options is what a node's pull needs.
type Options struct {
	Root   string       // the node's root, "/" on the node itself
	From   string       // the published folder's URL on the CA host, e.g. http://10.100.0.1:8440
	Client *http.Client // nil: one with a 30s timeout
	Now    time.Time
	Log    io.Writer // what was installed or refused, one line each
}

// Result is what a pull installed.
type Result struct {
	CRL, KRL bool // installed (changed)
	// Revoked is set when the CRL installed revokes serials the one
	// before did not: nginx must restart, since a reload keeps its TLS
	// session cache and a revoked client could resume a session.
	Revoked bool
}

// Pull fetches the CRL, the KRL and its signature from o.From, checks them
// against the CA certificate installed under o.Root and the files it holds,
// and installs each that passes (atomically, 0644). A file that fails a
// check is never installed: the one installed is kept, the reason logged,
// and the error returned (wrapping ErrRefused) once the other file had its
// turn.
func Pull(ctx context.Context, o Options) (*Result, error) {
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", a...)
		}
	}
	path := func(p string) string { return filepath.Join(o.Root, filepath.FromSlash(p)) }
	caPEM, err := os.ReadFile(path(steps.CACertPath))
	if err != nil {
		return nil, fmt.Errorf("pull: the CA this node trusts: %w", err)
	}
	ca, err := pki.DecodeCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("pull: %s: %w", steps.CACertPath, err)
	}
	res := &Result{}
	var errs []error
	fail := func(what string, err error) {
		logf("%s: %v; the installed one is kept", what, err)
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
	}

	if crl, err := Fetch(ctx, client, o.From, CRLName); err != nil {
		fail("CRL", err)
	} else if installed, err := readOptional(path(steps.CRLPath)); err != nil {
		fail("CRL", err)
	} else if parsed, err := CheckCRL(ca, installed, crl, o.Now); err != nil {
		fail("CRL", err)
	} else if !bytes.Equal(installed, crl) {
		if err := atomicfile.WriteFile(path(steps.CRLPath), crl, 0o644); err != nil {
			fail("CRL", err)
		} else {
			res.CRL = true
			n := newRevocations(installed, parsed)
			res.Revoked = n > 0
			logf("CRL number %s installed (%d new revocation(s)), next update %s", parsed.Number, n, parsed.NextUpdate.UTC().Format(time.RFC3339))
		}
	}

	krl, err := Fetch(ctx, client, o.From, KRLName)
	var sig []byte
	if err == nil {
		sig, err = Fetch(ctx, client, o.From, KRLSigName)
	}
	if err != nil {
		fail("KRL", err)
	} else if installed, err := readOptional(path(steps.SSHKRLPath)); err != nil {
		fail("KRL", err)
	} else if err := CheckKRL(ca, installed, krl, sig); err != nil {
		fail("KRL", err)
	} else if !bytes.Equal(installed, krl) {
		if err := atomicfile.WriteFile(path(steps.SSHKRLPath), krl, 0o644); err != nil {
			fail("KRL", err)
		} else {
			res.KRL = true
			v, _ := KRLVersion(krl)
			logf("KRL version %d installed", v)
		}
	}
	return res, errors.Join(errs...)
}

// readOptional reads a file; a missing one is nil.
func readOptional(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// newRevocations counts the serials crl revokes that the installed CRL
// (nil: none) does not.
func newRevocations(installed []byte, crl *x509.RevocationList) int {
	old := map[string]bool{}
	if installed != nil {
		if prev, err := ParseCRL(installed); err == nil {
			for _, e := range prev.RevokedCertificateEntries {
				old[e.SerialNumber.String()] = true
			}
		}
	}
	n := 0
	for _, e := range crl.RevokedCertificateEntries {
		if !old[e.SerialNumber.String()] {
			n++
		}
	}
	return n
}

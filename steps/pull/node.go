package pull

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

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
	// Node, when set, is this node's name: the pull also fetches its own
	// renewed server certificates and SSH host certificate (see
	// PublishLeaves).
	Node string
}

// Result is what a pull installed.
type Result struct {
	CRL, KRL bool // installed (changed): nginx reloads for a new CRL
	// Servers names the services whose renewed certificate was installed
	// (nginx must reload); HostCert is set when the SSH host certificate
	// was (sshd reads it only at start and reload).
	Servers  []string
	HostCert bool
}

// Pull fetches the CRL, the KRL and its signature from o.From, checks them
// against the CA certificate installed under o.Root and the files it holds,
// and installs each that passes (atomically, 0644). With o.Node it also
// fetches the node's renewed leaves (see pullLeaves). A file that fails a
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
	trusted, err := ParseCerts(caPEM)
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
	} else if parsed, err := CheckCRLs(trusted, installed, crl, o.Now); err != nil {
		fail("CRL", err)
	} else if !bytes.Equal(installed, crl) {
		if err := atomicfile.WriteFile(path(steps.CRLPath), crl, 0o644); err != nil {
			fail("CRL", err)
		} else {
			res.CRL = true
			for _, c := range parsed {
				logf("CRL number %s of %q installed (%d new revocation(s)), next update %s", c.Number, c.Issuer.CommonName,
					newRevocations(installed, []*x509.RevocationList{c}), c.NextUpdate.UTC().Format(time.RFC3339))
			}
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
	} else if err := CheckKRLs(trusted, installed, krl, sig); err != nil {
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
	if o.Node != "" {
		pullLeaves(ctx, client, o, res, logf, fail)
	}
	return res, errors.Join(errs...)
}

// pullLeaves fetches, for each service certificate installed under
// o.Root (TLSDir/SERVICE.crt beside its key) and for the SSH host
// certificate, the one the CA host publishes for o.Node, and installs it
// when CheckServerCert or CheckHostCert passes, with the installed file's
// mode and owner. A file the CA host does not publish is left alone; one
// that fails a check is logged and kept.
func pullLeaves(ctx context.Context, client *http.Client, o Options, res *Result, logf func(string, ...any), fail func(string, error)) {
	path := func(p string) string { return filepath.Join(o.Root, filepath.FromSlash(p)) }
	fetch := func(what, name string) []byte {
		data, err := Fetch(ctx, client, o.From, LeafPath(o.Node, name))
		if errors.Is(err, ErrNotFound) {
			logf("%s: none published for %s; the installed one is kept", what, o.Node)
			return nil
		}
		if err != nil {
			fail(what, err)
			return nil
		}
		return data
	}
	install := func(what, p string, data []byte) bool {
		fi, err := os.Stat(p)
		if err != nil {
			fail(what, err)
			return false
		}
		uid, gid := ownerOf(fi)
		if err := atomicfile.WriteFileOwned(p, data, fi.Mode().Perm(), uid, gid); err != nil {
			fail(what, err)
			return false
		}
		return true
	}

	trustPEM, err := os.ReadFile(path(steps.CACertPath))
	var trusted []*x509.Certificate
	if err == nil {
		trusted, err = ParseCerts(trustPEM)
	}
	if err != nil {
		fail("server certificates", fmt.Errorf("%s: %w", steps.CACertPath, err))
		trusted = nil
	}
	crts, _ := filepath.Glob(filepath.Join(path(steps.TLSDir), "*"+ServerSuffix))
	for _, crt := range crts {
		if trusted == nil {
			break
		}
		svc := strings.TrimSuffix(filepath.Base(crt), ServerSuffix)
		what := "certificate of " + svc
		keyPEM, err := os.ReadFile(strings.TrimSuffix(crt, ServerSuffix) + ".key")
		if errors.Is(err, os.ErrNotExist) {
			continue // not a key of this node's
		}
		var key crypto.Signer
		if err == nil {
			key, err = pki.DecodeKeyPEM(keyPEM, nil)
		}
		if err != nil {
			fail(what, fmt.Errorf("its key: %w", err))
			continue
		}
		fetched := fetch(what, svc+ServerSuffix)
		if fetched == nil {
			continue
		}
		installed, err := os.ReadFile(crt)
		if err != nil {
			fail(what, err)
			continue
		}
		if bytes.Equal(installed, fetched) {
			continue
		}
		cert, err := CheckServerCert(trusted, key.Public(), installed, fetched, o.Now)
		if err != nil {
			fail(what, err)
			continue
		}
		if install(what, crt, fetched) {
			res.Servers = append(res.Servers, svc)
			logf("%s renewed: serial %s until %s", what, cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}

	const what = "SSH host certificate"
	installed, err := readOptional(path(steps.SSHHostCertPath))
	if err != nil {
		fail(what, err)
		return
	}
	if installed == nil {
		return // none installed: the node's bundle brings the first
	}
	fetched := fetch(what, HostCertName)
	if fetched == nil || bytes.Equal(installed, fetched) {
		return
	}
	known, err := os.ReadFile(path(steps.SSHKnownHostsPath))
	var cas []ssh.PublicKey
	if err == nil {
		cas, err = HostCAs(known)
	}
	if err != nil {
		fail(what, fmt.Errorf("the host CA: %s: %w", steps.SSHKnownHostsPath, err))
		return
	}
	keyPEM, err := os.ReadFile(path(steps.SSHHostKeyPath))
	var signer ssh.Signer
	if err == nil {
		signer, err = ssh.ParsePrivateKey(keyPEM)
	}
	if err != nil {
		fail(what, fmt.Errorf("the host key %s: %w", steps.SSHHostKeyPath, err))
		return
	}
	cert, err := CheckHostCert(cas, signer.PublicKey(), installed, fetched, o.Now)
	if err != nil {
		fail(what, err)
		return
	}
	if install(what, path(steps.SSHHostCertPath), fetched) {
		res.HostCert = true
		logf("%s renewed: serial %d until %s", what, cert.Serial, time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
	}
}

// ownerOf is the owner and group of a file (-1 where unknown).
func ownerOf(fi os.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// readOptional reads a file; a missing one is nil.
func readOptional(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// newRevocations counts the serials, per issuer, that crls revoke and the
// installed CRL file (nil: none) does not.
func newRevocations(installed []byte, crls []*x509.RevocationList) int {
	old := map[string]bool{}
	if installed != nil {
		if prev, err := ParseCRLs(installed); err == nil {
			for _, c := range prev {
				for _, e := range c.RevokedCertificateEntries {
					old[string(c.RawIssuer)+"/"+e.SerialNumber.String()] = true
				}
			}
		}
	}
	n := 0
	for _, c := range crls {
		for _, e := range c.RevokedCertificateEntries {
			if !old[string(c.RawIssuer)+"/"+e.SerialNumber.String()] {
				n++
			}
		}
	}
	return n
}

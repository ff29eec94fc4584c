package pull

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/pki"
)

// Renewed leaves in the published folder: nodes/NODE/SERVICE.crt and
// nodes/NODE/HostCertName, certificates only.
const (
	LeavesDir    = steps.PublishedLeaves
	ServerSuffix = ".crt"
)

// HostCertName is the published SSH host certificate's name.
var HostCertName = path.Base(steps.SSHHostCertPath)

// LeafPath is where, under the published folder, the node's file of name
// is (a service's name+ServerSuffix, or HostCertName).
func LeafPath(node, name string) string { return path.Join(LeavesDir, node, name) }

// PublishLeaves writes every node's current leaf certificates into dir
// (0644, atomically, only what changed), for the nodes' pull. Only
// certificates are written: Leaves holds no key.
func PublishLeaves(dir string, leaves []authority.Leaves) error {
	write := func(rel string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("pull: publish: %w", err)
		}
		if same, err := atomicfile.Equal(p, data, 0o644); err != nil {
			return fmt.Errorf("pull: publish: %w", err)
		} else if same {
			return nil
		}
		if err := atomicfile.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("pull: publish: %w", err)
		}
		return nil
	}
	for _, l := range leaves {
		if err := steps.ValidName(l.Node); err != nil {
			return fmt.Errorf("pull: publish: node: %w", err)
		}
		for svc, cert := range l.Servers {
			if err := steps.ValidName(svc); err != nil {
				return fmt.Errorf("pull: publish: service: %w", err)
			}
			if b, _ := pem.Decode(cert); b == nil || b.Type != "CERTIFICATE" {
				return fmt.Errorf("pull: publish: %s's %s: not a PEM certificate", l.Node, svc)
			}
			if err := write(LeafPath(l.Node, svc+ServerSuffix), cert); err != nil {
				return err
			}
		}
		if l.HostCert != nil {
			line := bytes.TrimSpace(l.HostCert)
			if err := write(LeafPath(l.Node, HostCertName), append(line, '\n')); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseCerts reads every certificate of a PEM file (the CAs a node trusts:
// two during a rotation).
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

// CheckServerCert checks a fetched server certificate (PEM) before it
// replaces the installed one: a single certificate that chains to one of
// the trusted CAs for server authentication and is in force at now, for
// the node's own key (key), with the installed one's names, and ending
// later than the installed one.
func CheckServerCert(trusted []*x509.Certificate, key crypto.PublicKey, installed, fetched []byte, now time.Time) (*x509.Certificate, error) {
	b, rest := pem.Decode(fetched)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) > 0 {
		return nil, refused("not one PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, refused("certificate: %v", err)
	}
	old, err := pki.DecodeCertPEM(installed)
	if err != nil {
		return nil, fmt.Errorf("the installed certificate: %w", err)
	}
	roots := x509.NewCertPool()
	for _, c := range trusted {
		roots.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, refused("not a certificate in force from a CA this node trusts (issuer %q): %v", cert.Issuer.CommonName, err)
	}
	if k, ok := key.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(cert.PublicKey) {
		return nil, refused("for another key than this node's own")
	}
	if cert.Subject.CommonName != old.Subject.CommonName || !slices.Equal(cert.DNSNames, old.DNSNames) ||
		!slices.EqualFunc(cert.IPAddresses, old.IPAddresses, func(a, b net.IP) bool { return a.Equal(b) }) {
		return nil, refused("names %q %q, not the installed %q %q", cert.Subject.CommonName, cert.DNSNames, old.Subject.CommonName, old.DNSNames)
	}
	if !cert.NotAfter.After(old.NotAfter) {
		return nil, refused("ends %s, not later than the installed one (%s)", cert.NotAfter.UTC().Format(time.RFC3339), old.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// HostCAs reads the host CA keys of a known_hosts file's @cert-authority
// lines.
func HostCAs(knownHosts []byte) ([]ssh.PublicKey, error) {
	var out []ssh.PublicKey
	for len(bytes.TrimSpace(knownHosts)) > 0 {
		marker, _, key, _, rest, err := ssh.ParseKnownHosts(knownHosts)
		if errors.Is(err, io.EOF) {
			break // only comments and blank lines left
		}
		if err != nil {
			return nil, err
		}
		if marker == "cert-authority" {
			out = append(out, key)
		}
		knownHosts = rest
	}
	if len(out) == 0 {
		return nil, errors.New("no @cert-authority line")
	}
	return out, nil
}

// CheckHostCert checks a fetched SSH host certificate line before it
// replaces the installed one: a host certificate signed by one of the
// host CAs (its signature checked), in force at now, for the node's own
// host key (hostKey), with the installed one's principals, and ending
// later than the installed one.
func CheckHostCert(hostCAs []ssh.PublicKey, hostKey ssh.PublicKey, installed, fetched []byte, now time.Time) (*ssh.Certificate, error) {
	parse := func(line []byte) (*ssh.Certificate, error) {
		pub, _, _, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(rest)) > 0 {
			return nil, errors.New("more than one line")
		}
		c, ok := pub.(*ssh.Certificate)
		if !ok || c.CertType != ssh.HostCert {
			return nil, errors.New("not an SSH host certificate")
		}
		return c, nil
	}
	cert, err := parse(fetched)
	if err != nil {
		return nil, refused("%v", err)
	}
	old, err := parse(installed)
	if err != nil {
		return nil, fmt.Errorf("the installed host certificate: %w", err)
	}
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return slices.ContainsFunc(hostCAs, func(ca ssh.PublicKey) bool { return bytes.Equal(ca.Marshal(), auth.Marshal()) })
		},
		Clock: func() time.Time { return now },
	}
	if !checker.IsHostAuthority(cert.SignatureKey, "") {
		return nil, refused("signed by %s, not by a host CA this node trusts", ssh.FingerprintSHA256(cert.SignatureKey))
	}
	principal := ""
	if len(old.ValidPrincipals) > 0 {
		principal = old.ValidPrincipals[0]
	}
	if err := checker.CheckCert(principal, cert); err != nil {
		return nil, refused("%v", err)
	}
	if !bytes.Equal(cert.Key.Marshal(), hostKey.Marshal()) {
		return nil, refused("for another key than this node's host key")
	}
	if !slices.Equal(cert.ValidPrincipals, old.ValidPrincipals) {
		return nil, refused("principals %q, not the installed %q", cert.ValidPrincipals, old.ValidPrincipals)
	}
	if cert.ValidBefore <= old.ValidBefore {
		return nil, refused("ends %s, not later than the installed one (%s)",
			time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339), time.Unix(int64(old.ValidBefore), 0).UTC().Format(time.RFC3339))
	}
	return cert, nil
}

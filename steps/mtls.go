package steps

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"

	"ztwizard/templates"
)

// nginxTemplate is the template of one mTLS service's nginx configuration.
const nginxTemplate = "nginx.tmpl"

// nginxConfPath is where the nginx configuration of the service called name
// lands on its node.
func nginxConfPath(name string) string {
	return path.Join(NginxConfDir, "ztwizard-"+name+".conf")
}

// mtlsCertPath is where the server certificate of the service called name
// lands on its node.
func mtlsCertPath(name string) string { return path.Join(TLSDir, name+".crt") }

// mtlsKeyPath is where the server private key of the service called name
// lands on its node.
func mtlsKeyPath(name string) string { return path.Join(TLSDir, name+".key") }

// nginxAllowVar is the nginx variable (without "$") that is 1 when the client
// certificate of a request belongs to an identity on the allow-list of the
// service called name, and 0 otherwise.
func nginxAllowVar(name string) string {
	return "ztwizard_allow_" + strings.ReplaceAll(name, "-", "_")
}

// NginxFiles returns the files nginx needs on node to put the site's mTLS
// services there behind client-certificate authentication: the CA chain and
// the CRL it verifies clients against, each service's server certificate
// and key, and one configuration file per service (included inside http{}).
// A node without services gets no files. The result is sorted by path.
//
// Each service's configuration accepts TLS 1.2 and 1.3 only, requires a
// client certificate issued by the CA chain in sec.CACert and not revoked
// by sec.CRL, answers 403 unless the certificate's CN is on the service's
// allow-list, and passes the verified subject DN to the upstream in
// X-Client-DN, replacing any such header the client sent.
func NginxFiles(site *Site, node string, sec *Secrets) ([]File, error) {
	if site == nil {
		return nil, errors.New("mtls: nil site")
	}
	var services []Service
	for _, sv := range site.Services {
		if sv.Node == node {
			services = append(services, sv)
		}
	}
	if len(services) == 0 {
		return nil, nil
	}
	if sec == nil {
		return nil, fmt.Errorf("mtls: node %q: no secrets", node)
	}
	depth, err := nginxVerifyDepth(sec.CACert, sec.CRL)
	if err != nil {
		return nil, fmt.Errorf("mtls: node %q: %w", node, err)
	}
	files := []File{
		{Path: CACertPath, Mode: 0o644, Content: bytes.Clone(sec.CACert)},
		{Path: CRLPath, Mode: 0o644, Content: bytes.Clone(sec.CRL)},
	}
	seen := map[string]bool{}
	for _, sv := range services {
		if seen[sv.Name] {
			return nil, fmt.Errorf("mtls: service %q: defined twice on node %q", sv.Name, node)
		}
		seen[sv.Name] = true
		if err := ValidName(sv.Name); err != nil {
			return nil, fmt.Errorf("mtls: service %q: %w", sv.Name, err)
		}
		kp, ok := sec.Servers[sv.Name]
		if !ok {
			return nil, fmt.Errorf("mtls: service %q: no server certificate and key in the secrets (issue one for %s)", sv.Name, sv.ServerName)
		}
		if err := checkServerKeyPair(kp); err != nil {
			return nil, fmt.Errorf("mtls: service %q: %w", sv.Name, err)
		}
		conf, err := nginxVhost(sv, depth)
		if err != nil {
			return nil, fmt.Errorf("mtls: service %q: %w", sv.Name, err)
		}
		files = append(files,
			File{Path: mtlsCertPath(sv.Name), Mode: 0o644, Content: bytes.Clone(kp.Cert)},
			File{Path: mtlsKeyPath(sv.Name), Mode: 0o600, Content: bytes.Clone(kp.Key)},
			File{Path: nginxConfPath(sv.Name), Mode: 0o644, Content: conf},
		)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// nginxVhostData is what templates/nginx.tmpl renders. Every string is
// already quoted for nginx.
type nginxVhostData struct {
	Name        string   // the service name, validated
	AllowVar    string   // the allow-list variable, without "$"
	Allow       []string // quoted regular expressions on $ssl_client_s_dn
	Listen      int
	ServerName  string
	Cert        string
	Key         string
	CACert      string
	CRL         string
	VerifyDepth int
	Upstream    string
	HSTS        bool
}

// nginxVhost renders the nginx configuration of one service.
func nginxVhost(sv Service, depth int) ([]byte, error) {
	listen := sv.Listen
	if listen == 0 {
		listen = DefaultHTTPSPort
	}
	if err := ValidPort(listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := ValidDNSName(sv.ServerName); err != nil {
		return nil, fmt.Errorf("server_name: %w", err)
	}
	upstream, err := nginxUpstream(sv.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	d := nginxVhostData{
		Name:        sv.Name,
		AllowVar:    nginxAllowVar(sv.Name),
		Listen:      listen,
		VerifyDepth: depth,
		HSTS:        sv.HSTS,
	}
	quoted := []struct {
		dst *string
		val string
	}{
		{&d.ServerName, strings.ToLower(strings.TrimSuffix(sv.ServerName, "."))},
		{&d.Cert, mtlsCertPath(sv.Name)},
		{&d.Key, mtlsKeyPath(sv.Name)},
		{&d.CACert, CACertPath},
		{&d.CRL, CRLPath},
		{&d.Upstream, upstream},
	}
	for _, q := range quoted {
		if *q.dst, err = nginxQuote(q.val); err != nil {
			return nil, err
		}
	}
	for i, client := range sv.Allow {
		if err := ValidName(client); err != nil {
			return nil, fmt.Errorf("allow[%d]: %w", i, err)
		}
		re, err := nginxQuote(nginxCNPattern(client))
		if err != nil {
			return nil, fmt.Errorf("allow[%d]: %w", i, err)
		}
		if !slices.Contains(d.Allow, re) {
			d.Allow = append(d.Allow, re)
		}
	}
	out, err := templates.Render(nginxTemplate, d)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// nginxCNPattern is the nginx map key (a case-sensitive PCRE) that matches
// an RFC 2253 subject DN whose first, most specific component is exactly
// CN=cn: the CN value must be followed by the next component (",") or the
// end of the DN (\z), so "service-worker-01" does not match
// "service-worker-011", and the anchor keeps "xservice-worker-01" and an
// escaped ",CN=..." inside another attribute's value out.
func nginxCNPattern(cn string) string {
	return "~^CN=" + pcreQuote(cn) + `(?:,|\z)`
}

// pcreQuote escapes every character of s that is not an ASCII letter or
// digit with a backslash, which PCRE reads as that character literally.
func pcreQuote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// nginxQuote returns s as a double-quoted nginx string. nginx has no escape
// for "$" (a variable in directives that take them) and no use for control
// characters, so those are refused; backslashes and quotes are escaped.
func nginxQuote(s string) (string, error) {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			return "", fmt.Errorf("%q: a \"$\" cannot be written safely into nginx configuration", s)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%q: control character in a value for nginx", s)
		case c == '\\' || c == '"':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), nil
}

// nginxUpstream checks a service's upstream for proxy_pass: an http or
// https URL with a host, without user information, query or fragment, made
// only of characters that mean nothing special to nginx.
func nginxUpstream(s string) (string, error) {
	if err := ValidUpstream(s); err != nil {
		return "", err
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%q: an upstream has no user, query or fragment", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~:/[]%", c) >= 0) {
			return "", fmt.Errorf("%q: character %q is not allowed in an upstream", s, c)
		}
	}
	return s, nil
}

// nginxVerifyDepth checks the CA chain and the CRLs and returns the
// ssl_verify_depth for that chain. OpenSSL counts the CA certificates
// between a client's certificate and the trust anchor, so a chain of n
// certificates (intermediates and root) needs n-1; the result is at least
// 1, nginx's default, which a root that signs leaves directly (and allows
// no intermediates: path length 0) keeps exact. nginx checks revocation at
// every level of the chain, so each CA needs a CRL it signed: without one,
// every client is refused.
func nginxVerifyDepth(caPEM, crlPEM []byte) (int, error) {
	var chain []*x509.Certificate
	for block, rest := pem.Decode(caPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return 0, fmt.Errorf("CA chain: certificate %d: %w", len(chain)+1, err)
		}
		if !c.IsCA {
			return 0, fmt.Errorf("CA chain: certificate %d (%q) is not a CA", len(chain)+1, c.Subject.String())
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return 0, errors.New("CA chain: no CERTIFICATE PEM block")
	}
	var crls []*x509.RevocationList
	for block, rest := pem.Decode(crlPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return 0, fmt.Errorf("CRL %d: %w", len(crls)+1, err)
		}
		crls = append(crls, crl)
	}
	if len(crls) == 0 {
		return 0, errors.New("CRL: no X509 CRL PEM block (nginx refuses every client without one)")
	}
	for _, c := range chain {
		if !slices.ContainsFunc(crls, func(crl *x509.RevocationList) bool { return crl.CheckSignatureFrom(c) == nil }) {
			return 0, fmt.Errorf("CRL: none signed by CA %q (nginx refuses every client without one)", c.Subject.String())
		}
	}
	return max(1, len(chain)-1), nil
}

// checkServerKeyPair makes sure nginx can load the pair: a PEM certificate
// and its matching, unencrypted PEM private key.
func checkServerKeyPair(kp KeyPair) error {
	if len(kp.Cert) == 0 || len(kp.Key) == 0 {
		return errors.New("server certificate or key is empty")
	}
	if _, err := tls.X509KeyPair(kp.Cert, kp.Key); err != nil {
		return fmt.Errorf("server certificate and key: %w", err)
	}
	return nil
}

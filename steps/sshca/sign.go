package sshca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// Backdate is how far before the signing time a certificate becomes valid, to
// absorb clock skew between the CA and the hosts that check it.
const Backdate = 5 * time.Minute

// minRSABits is the smallest RSA CA key accepted.
const minRSABits = 2048

// Request describes one certificate to sign.
type Request struct {
	// Key is the public key being certified.
	Key ssh.PublicKey
	// KeyID identifies the certificate in logs and KRLs.
	KeyID string
	// Principals are account names for user certificates and host names
	// or addresses for host certificates. At least one is required.
	Principals []string
	// Validity is how long after signing the certificate stays valid.
	Validity time.Duration
	// Serial is the certificate serial number. It must not be zero, since
	// OpenSSH cannot revoke serial 0 by serial.
	Serial uint64
	// Forwarding lists what a user certificate permits beyond a pty:
	// ForwardAgent, ForwardPort. Host certificates take none.
	Forwarding []string
}

// What a user certificate may permit beyond a pty (Request.Forwarding).
const (
	ForwardAgent = "agent" // permit-agent-forwarding
	ForwardPort  = "port"  // permit-port-forwarding (-L, -R, -D)
)

// forwardingExtensions maps Request.Forwarding to certificate extensions.
var forwardingExtensions = map[string]string{
	ForwardAgent: "permit-agent-forwarding",
	ForwardPort:  "permit-port-forwarding",
}

// ValidForwarding checks one entry of Request.Forwarding.
func ValidForwarding(f string) error {
	if _, ok := forwardingExtensions[f]; !ok {
		return fmt.Errorf("forwarding %q is not one of %q, %q", f, ForwardAgent, ForwardPort)
	}
	return nil
}

// principalPattern is what isAccountName accepts, for messages.
const principalPattern = `^[a-z_][a-z0-9_-]{0,31}$`

// isAccountName tells whether p matches principalPattern. A function, not a
// regexp: compiling the pattern took a tenth of a millisecond of every
// ssh sign.
func isAccountName(p string) bool {
	if len(p) == 0 || len(p) > 32 {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'a' <= c && c <= 'z', c == '_':
		case i > 0 && ('0' <= c && c <= '9' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidPrincipal checks a user principal (an account name) against
// ^[a-z_][a-z0-9_-]{0,31}$.
func ValidPrincipal(p string) error {
	switch {
	case p == "":
		return errors.New("principal is empty")
	case strings.Contains(p, ","):
		return fmt.Errorf("principal %q contains a comma (ssh-keygen splits principals on commas)", p)
	case len(p) > 32:
		return fmt.Errorf("principal %q is longer than 32 characters", p)
	case strings.ToLower(p) != p:
		return fmt.Errorf("principal %q must be lowercase", p)
	case !isAccountName(p):
		return fmt.Errorf("principal %q is not an account name matching %s", p, principalPattern)
	}
	return nil
}

// ValidHostname checks a host principal: a lowercase DNS name or an IP
// address in canonical form. Commas, spaces and wildcards are rejected.
func ValidHostname(h string) error {
	switch {
	case h == "":
		return errors.New("host name is empty")
	case strings.Contains(h, ","):
		return fmt.Errorf("host name %q contains a comma (ssh-keygen splits principals on commas)", h)
	case strings.ContainsFunc(h, unicode.IsSpace):
		return fmt.Errorf("host name %q contains whitespace", h)
	case strings.ContainsAny(h, "*?!"):
		return fmt.Errorf("host name %q contains a wildcard or negation", h)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if ip.Zone() != "" {
			return fmt.Errorf("host address %q has a zone", h)
		}
		if ip.String() != h {
			return fmt.Errorf("host address %q is not canonical, write %q", h, ip.String())
		}
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name %q is longer than 253 characters", h)
	}
	if strings.ToLower(h) != h {
		return fmt.Errorf("host name %q must be lowercase", h)
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.ContainsFunc(l, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') }) {
			return fmt.Errorf("host name %q: label %q is not a DNS label", h, l)
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return fmt.Errorf("host name %q is neither an IP address nor a DNS name", h)
	}
	return nil
}

// SignUser signs a user certificate: principals are account names, and the
// certificate permits a pty, with no critical options. It permits agent or
// port forwarding only when req.Forwarding grants it; never X11 forwarding
// or ~/.ssh/rc.
func SignUser(ca crypto.Signer, req Request, now time.Time) (*ssh.Certificate, error) {
	perms := ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}
	for _, f := range req.Forwarding {
		if err := ValidForwarding(f); err != nil {
			return nil, fmt.Errorf("sshca: sign user %q: %w", req.KeyID, err)
		}
		perms.Extensions[forwardingExtensions[f]] = ""
	}
	c, err := sign(ca, req, now, ssh.UserCert, ValidPrincipal, perms)
	if err != nil {
		return nil, fmt.Errorf("sshca: sign user %q: %w", req.KeyID, err)
	}
	return c, nil
}

// SignHost signs a host certificate whose principals are the host's names
// and addresses. Host certificates carry no extensions.
func SignHost(ca crypto.Signer, req Request, now time.Time) (*ssh.Certificate, error) {
	if len(req.Forwarding) > 0 {
		return nil, fmt.Errorf("sshca: sign host %q: a host certificate permits no forwarding", req.KeyID)
	}
	c, err := sign(ca, req, now, ssh.HostCert, ValidHostname, ssh.Permissions{})
	if err != nil {
		return nil, fmt.Errorf("sshca: sign host %q: %w", req.KeyID, err)
	}
	return c, nil
}

func sign(ca crypto.Signer, req Request, now time.Time, certType uint32, valid func(string) error, perms ssh.Permissions) (*ssh.Certificate, error) {
	if err := checkRequest(req, valid); err != nil {
		return nil, err
	}
	from := now.Add(-Backdate).Unix()
	if from < 0 {
		return nil, fmt.Errorf("clock %s is before 1970", now)
	}
	signer, err := caSigner(ca)
	if err != nil {
		return nil, err
	}
	c := &ssh.Certificate{
		Key:             req.Key,
		Serial:          req.Serial,
		CertType:        certType,
		KeyId:           req.KeyID,
		ValidPrincipals: slices.Clone(req.Principals),
		ValidAfter:      uint64(from),
		ValidBefore:     uint64(now.Add(req.Validity).Unix()),
		Permissions:     perms,
	}
	if err := c.SignCert(rand.Reader, signer); err != nil {
		return nil, err
	}
	return c, nil
}

func checkRequest(req Request, valid func(string) error) error {
	if req.Key == nil {
		return errors.New("no public key")
	}
	if _, ok := req.Key.(*ssh.Certificate); ok {
		return errors.New("the key to certify is itself a certificate")
	}
	if req.KeyID == "" {
		return errors.New("empty key id")
	}
	if !utf8.ValidString(req.KeyID) || strings.ContainsFunc(req.KeyID, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return fmt.Errorf("key id %q contains unprintable characters", req.KeyID)
	}
	if len(req.Principals) == 0 {
		return errors.New("no principals (OpenSSH can read an empty list as any principal)")
	}
	for _, p := range req.Principals {
		if err := valid(p); err != nil {
			return err
		}
	}
	if req.Validity <= 0 {
		return fmt.Errorf("validity %s is not positive", req.Validity)
	}
	if req.Serial == 0 {
		return errors.New("serial 0 cannot be revoked by serial in a KRL")
	}
	return nil
}

// caKey is the CA key as it signs: an Ed25519 key through edSigner.
func caKey(ca crypto.Signer) crypto.Signer {
	if k, ok := ca.(ed25519.PrivateKey); ok {
		return edSigner(k)
	}
	return ca
}

// caSigner adapts the CA key for certificate signing: Ed25519 (through
// edSigner) and ECDSA as they are, RSA restricted to rsa-sha2-512 so SHA-1
// is never used.
func caSigner(ca crypto.Signer) (ssh.Signer, error) {
	if ca == nil {
		return nil, errors.New("no CA key")
	}
	s, err := ssh.NewSignerFromSigner(caKey(ca))
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	switch t := s.PublicKey().Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		return s, nil
	case ssh.KeyAlgoRSA:
		if pub, ok := ca.Public().(*rsa.PublicKey); !ok || pub.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA CA key shorter than %d bits", minRSABits)
		}
		as, ok := s.(ssh.AlgorithmSigner)
		if !ok {
			return nil, errors.New("RSA CA key cannot choose its signature algorithm")
		}
		return ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512})
	default:
		return nil, fmt.Errorf("CA key type %s is not supported", t)
	}
}

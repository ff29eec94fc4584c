package bundle

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/pki"
)

// Request file format.
const (
	RequestFormat  = "ztwizard-request"
	RequestVersion = 1
)

// ErrBadRequest is wrapped by every error that refuses a request.
var ErrBadRequest = errors.New("bad node request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, a...))
}

// Request is a node's request (N.req): only public material. Its private
// keys stay on the node, where they are used.
type Request struct {
	Format  string    `json:"format"`  // RequestFormat
	Version int       `json:"version"` // RequestVersion
	Site    string    `json:"site"`
	Node    string    `json:"node"`
	Created time.Time `json:"created"`
	// WireGuardPublicKey is the node's WireGuard public key (base64).
	WireGuardPublicKey string `json:"wireguard_public_key"`
	// CSRs holds one PEM certificate request per service the node runs.
	CSRs map[string]string `json:"csrs,omitempty"`
	// SSHHostKey is the node's Ed25519 SSH host public key line.
	SSHHostKey string `json:"ssh_host_key"`
}

// Made lists the private keys MakeRequest made because they were missing.
type Made []string

// MakeRequest makes node's request on the node whose root is root: it makes
// the node's private keys where they are used when they are missing (the
// WireGuard key, a TLS key per service of the node in the site's CA key
// type, the SSH Ed25519 host key), each 0600, and returns only their public
// parts.
func MakeRequest(root string, site *steps.Site, node string, now time.Time) (*Request, Made, error) {
	if _, ok := site.Node(node); !ok {
		return nil, nil, badRequest("the site has no node %q", node)
	}
	req := &Request{Format: RequestFormat, Version: RequestVersion, Site: site.Site, Node: node, Created: now.UTC()}
	var made Made
	wgPath := filepath.Join(root, steps.WireGuardKeyPath)
	var wg wgtypes.Key
	if data, err := os.ReadFile(wgPath); err == nil {
		if wg, err = wgtypes.ParseKey(strings.TrimSpace(string(data))); err != nil {
			return nil, nil, fmt.Errorf("request: %s is not a WireGuard key", steps.WireGuardKeyPath)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if wg, err = wgtypes.GeneratePrivateKey(); err != nil {
			return nil, nil, fmt.Errorf("request: %w", err)
		}
		if err := writeSecret(wgPath, []byte(wg.String()+"\n")); err != nil {
			return nil, nil, err
		}
		made = append(made, steps.WireGuardKeyPath)
	} else {
		return nil, nil, fmt.Errorf("request: %w", err)
	}
	req.WireGuardPublicKey = wg.PublicKey().String()

	kt, err := pki.ParseKeyType(site.CA.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("request: ca.key: %w", err)
	}
	for _, s := range site.Services {
		if s.Node != node {
			continue
		}
		rel := filepath.Join(steps.TLSDir, s.Name+".key")
		key, fresh, err := loadOrMakeKey(filepath.Join(root, rel), kt)
		if err != nil {
			return nil, nil, fmt.Errorf("request: service %q: %w", s.Name, err)
		}
		if fresh {
			made = append(made, rel)
		}
		tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: s.ServerName}, DNSNames: []string{s.ServerName}}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			return nil, nil, fmt.Errorf("request: service %q: CSR: %w", s.Name, err)
		}
		if req.CSRs == nil {
			req.CSRs = map[string]string{}
		}
		req.CSRs[s.Name] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}

	hostPath := filepath.Join(root, steps.SSHHostKeyPath)
	pub, fresh, err := loadOrMakeHostKey(hostPath, "root@"+node)
	if err != nil {
		return nil, nil, err
	}
	if fresh {
		made = append(made, steps.SSHHostKeyPath)
	}
	req.SSHHostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	return req, made, nil
}

// writeSecret writes a private key file 0600 in a 0700 folder, atomically.
func writeSecret(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	return nil
}

// loadOrMakeKey reads a PEM private key, or makes one of type kt.
func loadOrMakeKey(path string, kt pki.KeyType) (crypto.Signer, bool, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := pki.DecodeKeyPEM(data, nil)
		if err != nil {
			return nil, false, fmt.Errorf("%s: not a readable private key", path)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return nil, false, err
	}
	pemKey, err := pki.EncodeKeyPEM(key, nil)
	if err != nil {
		return nil, false, err
	}
	return key, true, writeSecret(path, pemKey)
}

// loadOrMakeHostKey reads the SSH Ed25519 host key's public part, or makes
// the key pair as ssh-keygen would (private 0600, .pub 0644).
func loadOrMakeHostKey(path, comment string) (ssh.PublicKey, bool, error) {
	if data, err := os.ReadFile(path + ".pub"); err == nil {
		pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("request: %s.pub: not an SSH public key", path)
		}
		return pub, false, nil
	}
	if data, err := os.ReadFile(path); err == nil {
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("request: %s: not a readable SSH private key", path)
		}
		return signer.PublicKey(), false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("request: %w", err)
	}
	pub, pemKey, err := NewHostKey(comment)
	if err != nil {
		return nil, false, fmt.Errorf("request: %w", err)
	}
	if err := writeSecret(path, pemKey); err != nil {
		return nil, false, err
	}
	line := append(bytes.TrimSpace(ssh.MarshalAuthorizedKey(pub)), []byte(" "+comment+"\n")...)
	if err := atomicfile.WriteFile(path+".pub", line, 0o644); err != nil {
		return nil, false, fmt.Errorf("request: %w", err)
	}
	return pub, true, nil
}

// NewHostKey makes an Ed25519 SSH host key: its public key and the private
// key in OpenSSH's PEM format.
func NewHostKey(comment string) (ssh.PublicKey, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return pub, pem.EncodeToMemory(block), nil
}

// withHostKey adds an SSH host key (OpenSSH PEM) and its public line to
// files, sorted by path.
func withHostKey(files []steps.File, keyPEM string) ([]steps.File, error) {
	signer, err := ssh.ParsePrivateKey([]byte(keyPEM))
	if err != nil {
		return nil, refused("ssh_host_key: not an SSH private key")
	}
	files = append(files,
		steps.File{Path: steps.SSHHostKeyPath, Mode: 0o600, Content: []byte(keyPEM)},
		steps.File{Path: steps.SSHHostKeyPath + ".pub", Mode: 0o644, Content: ssh.MarshalAuthorizedKey(signer.PublicKey())})
	slices.SortFunc(files, func(a, b steps.File) int { return cmp.Compare(a.Path, b.Path) })
	return files, nil
}

// Marshal writes the request file's bytes.
func (r *Request) Marshal() ([]byte, error) {
	out, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	return append(out, '\n'), nil
}

// ParseRequest reads a request file. It checks its form only; Check
// checks it against the site.
func ParseRequest(data []byte) (*Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, badRequest("not a ztwizard node request: %v", err)
	}
	if r.Format != RequestFormat {
		return nil, badRequest("not a ztwizard node request (format %q)", r.Format)
	}
	if r.Version != RequestVersion {
		return nil, badRequest("request version %d; this ztwizard reads version %d", r.Version, RequestVersion)
	}
	return &r, nil
}

// Checked is a request checked against the site, its keys parsed.
type Checked struct {
	*Request
	WireGuard wgtypes.Key // the public key
	CSRs      map[string]*x509.CertificateRequest
	HostKey   ssh.PublicKey
}

// Check checks a request against the site: the right site and a node of
// it, a well-formed WireGuard public key, exactly one CSR per service of
// the node, each self-signed, for the service's server_name and no other
// name, with an acceptable key; an SSH host public key (not a certificate).
func Check(site *steps.Site, r *Request) (*Checked, error) {
	if r.Site != site.Site {
		return nil, badRequest("the request is for site %q, this site is %q", r.Site, site.Site)
	}
	if _, ok := site.Node(r.Node); !ok {
		return nil, badRequest("the request is for node %q, which the site does not have", r.Node)
	}
	c := &Checked{Request: r, CSRs: map[string]*x509.CertificateRequest{}}
	k, err := wgtypes.ParseKey(r.WireGuardPublicKey)
	if err != nil || k == (wgtypes.Key{}) {
		return nil, badRequest("wireguard_public_key: not a WireGuard public key")
	}
	c.WireGuard = k
	want := map[string]steps.Service{}
	for _, s := range site.Services {
		if s.Node == r.Node {
			want[s.Name] = s
		}
	}
	for name := range r.CSRs {
		if _, ok := want[name]; !ok {
			return nil, badRequest("csrs.%s: node %q runs no service %q", name, r.Node, name)
		}
	}
	for name, s := range want {
		p, ok := r.CSRs[name]
		if !ok {
			return nil, badRequest("csrs: no certificate request for service %q of node %q", name, r.Node)
		}
		block, _ := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE REQUEST" {
			return nil, badRequest("csrs.%s: not a PEM certificate request", name)
		}
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return nil, badRequest("csrs.%s: %v", name, err)
		}
		if err := csr.CheckSignature(); err != nil {
			return nil, badRequest("csrs.%s: its self-signature does not check: %v", name, err)
		}
		if csr.Subject.CommonName != s.ServerName || !slices.Equal(csr.DNSNames, []string{s.ServerName}) ||
			len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
			return nil, badRequest("csrs.%s: names CN %q and %v; the site wants exactly %q", name, csr.Subject.CommonName, csr.DNSNames, s.ServerName)
		}
		if err := CheckPublicKey(csr.PublicKey); err != nil {
			return nil, badRequest("csrs.%s: %v", name, err)
		}
		c.CSRs[name] = csr
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(r.SSHHostKey))
	if err != nil || len(bytes.TrimSpace(rest)) > 0 {
		return nil, badRequest("ssh_host_key: not one SSH public key line")
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, badRequest("ssh_host_key: a certificate, not a host key")
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return nil, badRequest("ssh_host_key: %s; the node's Ed25519 host key is wanted", pub.Type())
	}
	c.HostKey = pub
	return c, nil
}

// CheckPublicKey accepts the key types the CA itself may have: ECDSA P-256
// or P-384, Ed25519, RSA of 2048 bits or more.
func CheckPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("ECDSA curve %s is not accepted", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return fmt.Errorf("an RSA key of %d bits is too small", k.N.BitLen())
	}
	return fmt.Errorf("key type %T is not accepted", pub)
}

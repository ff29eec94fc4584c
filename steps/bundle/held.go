package bundle

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

// HeldFile is where a node's state store keeps what it holds: the CA it
// trusts and the last bundle it applied.
const HeldFile = "node/bundle.json"

// Held is what a node holds from its CA host.
type Held struct {
	Site          string `json:"site"`
	Node          string `json:"node"`
	Serial        uint64 `json:"serial"` // of the last bundle applied
	CAFingerprint string `json:"ca_fingerprint"`
	CACert        string `json:"ca_cert"` // PEM: the CA this node trusts
	// Trusted holds, during a CA rotation, every CA this node trusts (PEM):
	// the signer of the last bundle and the CA it announced.
	Trusted  string    `json:"trusted,omitempty"`
	Applied  time.Time `json:"applied"`
	Expiries []Expiry  `json:"expiries"`
}

// Expiry is one thing the last bundle installed that runs out.
type Expiry struct {
	What     string    `json:"what"` // "CA", "CRL", "service api", "SSH host certificate"
	NotAfter time.Time `json:"not_after"`
}

// LoadHeld reads what the node holds; nil when it has applied no bundle.
func LoadHeld(store *state.Store) (*Held, error) {
	data, err := store.ReadFile(HeldFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	var h Held
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("bundle: %s: %w", store.Path(HeldFile), err)
	}
	return &h, nil
}

// SaveHeld records that the node applied p.
func SaveHeld(store *state.Store, p *Payload, now time.Time) error {
	h := Held{Site: p.Site, Node: p.Node, Serial: p.Serial, CAFingerprint: p.CAFingerprint, CACert: p.CACert,
		Trusted: p.Secrets.CACerts, Applied: now.UTC(), Expiries: Expiries(p)}
	data, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if err := store.WriteFile(HeldFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
}

// TrustFor is how a node with h (nil: none yet) checks a bundle: against
// the CA it holds (and, during a CA rotation, the CA the last bundle
// announced beside it), else against fingerprint (ParseFingerprint's
// form). A fingerprint given that is not a CA it holds is refused:
// changing the CA a node trusts is not done by a flag.
//
// This is how a CA rotation reaches a node: a bundle signed by the old CA
// announces the new one (Secrets.CACerts); once the node applied it, a
// bundle signed by the new CA is accepted. A bundle signed by the new CA
// that reaches a node before any such announcement is refused.
func TrustFor(h *Held, fingerprint string) (Trust, error) {
	if h == nil {
		return Trust{Fingerprint: fingerprint}, nil
	}
	cert, err := pki.DecodeCertPEM([]byte(h.CACert))
	if err != nil {
		return Trust{}, fmt.Errorf("bundle: the CA this node trusts: %w", err)
	}
	t := Trust{CACert: cert, Node: h.Node, LastSerial: h.Serial}
	rest := []byte(h.Trusted)
	for block, r := pem.Decode(rest); block != nil; block, r = pem.Decode(r) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return Trust{}, fmt.Errorf("bundle: a CA this node trusts: %w", err)
		}
		if !bytes.Equal(c.Raw, cert.Raw) {
			t.Also = append(t.Also, c)
		}
	}
	if fingerprint != "" && fingerprint != Fingerprint(cert) &&
		!slices.ContainsFunc(t.Also, func(c *x509.Certificate) bool { return Fingerprint(c) == fingerprint }) {
		return Trust{}, refused("--ca-fingerprint %s is not the CA this node trusts (%s)", fingerprint, Fingerprint(cert))
	}
	return t, nil
}

// Expiries lists what in p runs out: the CA, the CRL's nextUpdate, each
// service certificate and the SSH host certificate, soonest first.
func Expiries(p *Payload) []Expiry {
	var out []Expiry
	if c, err := pki.DecodeCertPEM([]byte(p.CACert)); err == nil {
		out = append(out, Expiry{What: "CA " + c.Subject.CommonName, NotAfter: c.NotAfter})
	}
	if der, err := pemDER(p.Secrets.CRL, "X509 CRL"); err == nil {
		if crl, err := x509.ParseRevocationList(der); err == nil {
			out = append(out, Expiry{What: "CRL", NotAfter: crl.NextUpdate})
		}
	}
	for name, sp := range p.Secrets.Servers {
		if c, err := pki.DecodeCertPEM([]byte(sp.Cert)); err == nil {
			out = append(out, Expiry{What: "service " + name, NotAfter: c.NotAfter})
		}
	}
	if p.Secrets.HostCert != "" {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.Secrets.HostCert)); err == nil {
			if c, ok := pub.(*ssh.Certificate); ok {
				out = append(out, Expiry{What: "SSH host certificate", NotAfter: time.Unix(int64(c.ValidBefore), 0).UTC()})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out
}

func pemDER(s, typ string) ([]byte, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("no %s PEM block", typ)
	}
	return block.Bytes, nil
}

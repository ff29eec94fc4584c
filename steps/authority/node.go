package authority

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/bundle"
	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
)

// Record kinds of the fleet in the audit log.
const (
	KindNodeRequest = "node-request"
	KindBundle      = "bundle"
	KindSSHHostKey  = "ssh-host-key"
)

// Fleet files in the store, per node.
func requestFile(node string) string { return path.Join("nodes", node, "request.json") }
func hostKeyFile(node string) string { return path.Join("nodes", node, "ssh_host_key.pub") }

// ImportRequest records a node's request, checked against the site: from
// now on the node's keys are its own (bundles carry no private key of it),
// its certificates are issued for the keys it requested, and its SSH host
// key is the one it sent.
func (a *Authority) ImportRequest(r *bundle.Request) (*bundle.Checked, error) {
	c, err := bundle.Check(a.Site, r)
	if err != nil {
		return nil, badInput("%v", err)
	}
	for _, n := range a.Site.Nodes {
		if n.Name == r.Node {
			continue
		}
		r, err := a.readRequest(n.Name)
		if err != nil {
			return nil, err
		}
		var other *wgtypes.Key
		if r != nil {
			k, _ := wgtypes.ParseKey(r.WireGuardPublicKey)
			other = &k
		} else if ok, err := a.exists(path.Join("wireguard", n.Name+".pub")); err != nil {
			return nil, err
		} else if ok {
			k, err := a.WireGuardPublicKey(n.Name)
			if err != nil {
				return nil, err
			}
			other = &k
		}
		if other != nil && *other == c.WireGuard {
			return nil, badInput("wireguard_public_key: node %q already has this WireGuard key", n.Name)
		}
	}
	data, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	if err := a.audit("import", KindNodeRequest, r.Node, "", time.Time{},
		fmt.Sprintf("wireguard %s, host key %s, %d CSR(s)", r.WireGuardPublicKey, ssh.FingerprintSHA256(c.HostKey), len(c.CSRs))); err != nil {
		return nil, err
	}
	if err := a.write(requestFile(r.Node), data, privateMode); err != nil {
		return nil, err
	}
	if err := a.RecordHostKey(r.Node, c.HostKey); err != nil {
		return nil, err
	}
	return c, nil
}

// NodeRequest returns node's imported request, checked against the site
// as it is now; nil when none was imported (its keys are made here).
func (a *Authority) NodeRequest(node string) (*bundle.Checked, error) {
	r, err := a.readRequest(node)
	if err != nil || r == nil {
		return nil, err
	}
	c, err := bundle.Check(a.Site, r)
	if err != nil {
		return nil, badInput("node %q: its imported request no longer fits the site (%v): make a new one on the node with `ztwizard node request` and import it", node, err)
	}
	return c, nil
}

func (a *Authority) readRequest(node string) (*bundle.Request, error) {
	data, err := a.Store.ReadFile(requestFile(node))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	r, err := bundle.ParseRequest(data)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", requestFile(node), err)
	}
	return r, nil
}

// wireGuardPublic returns a node's WireGuard public key: from its request,
// else from the key made here (made now if missing).
func (a *Authority) wireGuardPublic(node string) (wgtypes.Key, error) {
	r, err := a.readRequest(node)
	if err != nil {
		return wgtypes.Key{}, err
	}
	if r == nil {
		return a.WireGuardPublicKey(node)
	}
	k, err := wgtypes.ParseKey(r.WireGuardPublicKey)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("authority: %s: %w", requestFile(node), err)
	}
	return k, nil
}

// RecordHostKey records a node's SSH host public key: every later bundle,
// render and apply of the node carries a host certificate for it.
func (a *Authority) RecordHostKey(node string, pub ssh.PublicKey) error {
	if err := CheckNode(a.Site, node); err != nil {
		return err
	}
	line := []byte(sshca.PublicKeyLine(pub, "root@"+node))
	old, err := a.Store.ReadFile(hostKeyFile(node))
	if err == nil && bytes.Equal(old, line) {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("authority: %w", err)
	}
	if err := a.audit("record", KindSSHHostKey, node, "", time.Time{}, ssh.FingerprintSHA256(pub)); err != nil {
		return err
	}
	return a.write(hostKeyFile(node), line, privateMode)
}

// HostKey returns the node's recorded SSH host public key, nil if none.
func (a *Authority) HostKey(node string) (ssh.PublicKey, error) {
	data, err := a.Store.ReadFile(hostKeyFile(node))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", hostKeyFile(node), err)
	}
	return pub, nil
}

// hostCert returns a host certificate for the node's recorded host key:
// the current one while it is for that key, names the node as now and its
// renewal is not due (RenewDue), else a new one (the old one marked
// superseded, and revoked when the key changed).
func (a *Authority) hostCert(node string, pub ssh.PublicKey) ([]byte, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	recs := ix.Find(KindSSHHost, node)
	now := a.now()
	var cur *state.Record
	var curCert *ssh.Certificate
	var curLine []byte
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.RevokedAt != nil || r.SupersededAt != nil || !now.Before(r.NotAfter) {
			continue
		}
		line, err := a.readFile(r.File)
		if err != nil {
			return nil, err
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("authority: %s: %w", r.File, err)
		}
		c, ok := k.(*ssh.Certificate)
		if !ok {
			return nil, fmt.Errorf("authority: %s: not a certificate", r.File)
		}
		cur, curCert, curLine = &r, c, line
		break
	}
	if cur != nil && bytes.Equal(curCert.Key.Marshal(), pub.Marshal()) && !a.renewDue(cur.NotBefore, cur.NotAfter, now) && a.bySSHIssuer(KindSSHHostCA, curCert) {
		return curLine, nil
	}
	signed, err := a.SignHost(node, pub, nil, 0)
	if err != nil {
		return nil, err
	}
	if cur != nil {
		keyChanged := !bytes.Equal(curCert.Key.Marshal(), pub.Marshal())
		if err := a.supersede(cur.Kind, cur.Serial, signed.Record.Serial, keyChanged); err != nil {
			return nil, err
		}
	}
	return []byte(signed.Line), nil
}

// currentCert returns the newest certificate of a name in force and not
// superseded, without its key; nil when there is none.
func (a *Authority) currentCert(kind, name string) (*state.Record, *x509.Certificate, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, nil, fmt.Errorf("authority: %w", err)
	}
	recs := ix.Find(kind, name)
	now := a.now()
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.RevokedAt != nil || r.SupersededAt != nil || !now.Before(r.NotAfter) {
			continue
		}
		data, err := a.readFile(r.File)
		if err != nil {
			return nil, nil, err
		}
		cert, err := pki.DecodeCertPEM(data)
		if err != nil {
			return nil, nil, fmt.Errorf("authority: %s: %w", r.File, err)
		}
		return &r, cert, nil
	}
	return nil, nil, nil
}

// due tells whether a server certificate must be re-issued: renewal is
// due (RenewDue) or its names are not the service's.
func (a *Authority) due(cert *x509.Certificate, s steps.Service) bool {
	return a.renewDue(cert.NotBefore, cert.NotAfter, a.now()) || !a.byIssuer(cert) || cert.Subject.CommonName != s.ServerName || !slices.Equal(cert.DNSNames, []string{s.ServerName})
}

// RenewDue tells whether a leaf valid from notBefore to notAfter is
// renewed at now: from two thirds of its life on, or within WarnWithin of
// its end, so a renewed certificate reaches the node (with its next bundle
// or apply) long before the old one ends.
func RenewDue(notBefore, notAfter, now time.Time) bool {
	return RenewDueWithin(notBefore, notAfter, now, WarnWithin)
}

// RenewDueWithin is RenewDue with window in place of WarnWithin: the
// site's Timing().LeafWindow.
func RenewDueWithin(notBefore, notAfter, now time.Time, window time.Duration) bool {
	at := notBefore.Add(notAfter.Sub(notBefore) / 3 * 2)
	return !now.Before(at) || notAfter.Sub(now) < window
}

// renewDue is RenewDue on the site's clock (a test timescale's shorter
// window).
func (a *Authority) renewDue(notBefore, notAfter, now time.Time) bool {
	window := WarnWithin
	if a.Site != nil {
		window = a.Site.Timing().LeafWindow
	}
	return RenewDueWithin(notBefore, notAfter, now, window)
}

// serverForKey returns the service's certificate for a key the node holds
// (from its request): the current one unless it is due or for another
// key; a new one otherwise, the old one superseded (and revoked when the
// key changed).
func (a *Authority) serverForKey(s steps.Service, pub crypto.PublicKey) (steps.KeyPair, error) {
	rec, cert, err := a.currentCert(KindServer, s.Name)
	if err != nil {
		return steps.KeyPair{}, err
	}
	same := cert != nil && samePublicKey(cert.PublicKey, pub)
	if cert != nil && same && !a.due(cert, s) {
		return steps.KeyPair{Cert: pki.EncodeCertPEM(cert)}, nil
	}
	ca, err := a.issuer()
	if err != nil {
		return steps.KeyPair{}, err
	}
	serial, err := pki.RandomSerial(rand.Reader)
	if err != nil {
		return steps.KeyPair{}, fmt.Errorf("authority: serial: %w", err)
	}
	nc, err := ca.IssueServer(pub, s.ServerName, []string{s.ServerName}, nil, a.Site.CA.CertValidity.D(), a.now(), serial)
	if err != nil {
		return steps.KeyPair{}, fmt.Errorf("authority: issue %s: %w", s.Name, err)
	}
	newRec, err := a.keepCert(KindServer, s.Name, nc)
	if err != nil {
		return steps.KeyPair{}, err
	}
	if rec != nil {
		if err := a.supersede(rec.Kind, rec.Serial, newRec.Serial, !same); err != nil {
			return steps.KeyPair{}, err
		}
	}
	return steps.KeyPair{Cert: pki.EncodeCertPEM(nc)}, nil
}

// renewServer re-issues a service's certificate made here for the same
// key (its renewal is due or its names changed) and marks the old one
// superseded.
func (a *Authority) renewServer(s steps.Service, cur *Issued) (*Issued, error) {
	ca, err := a.issuer()
	if err != nil {
		return nil, err
	}
	serial, err := pki.RandomSerial(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authority: serial: %w", err)
	}
	nc, err := ca.IssueServer(cur.Key.Public(), s.ServerName, []string{s.ServerName}, nil, a.Site.CA.CertValidity.D(), a.now(), serial)
	if err != nil {
		return nil, fmt.Errorf("authority: issue %s: %w", s.Name, err)
	}
	is, err := a.keep(KindServer, s.Name, nc, cur.Key)
	if err != nil {
		return nil, err
	}
	if err := a.supersede(KindServer, cur.Record.Serial, is.Record.Serial, false); err != nil {
		return nil, err
	}
	return is, nil
}

// keepCert stores a certificate whose key is not here, and records it.
func (a *Authority) keepCert(kind, name string, cert *x509.Certificate) (state.Record, error) {
	dir := path.Join(x509Dir, strings.TrimPrefix(kind, "x509-"), name)
	serial := hexSerial(cert.SerialNumber)
	file := path.Join(dir, serial+".pem")
	rec := state.Record{Kind: kind, Name: name, Serial: serial, Subject: cert.Subject.String(),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, File: file}
	if err := a.audit("issue", kind, name, serial, cert.NotAfter, cert.Subject.String()+", key held by the node"); err != nil {
		return rec, err
	}
	if err := a.write(file, pki.EncodeCertPEM(cert), publicMode); err != nil {
		return rec, err
	}
	return rec, a.record(rec)
}

// supersede marks the certificate of kind and serial replaced by the one
// of serial by; with revoke it is also revoked (its key is no longer the
// node's) and a new CRL or KRL is published.
func (a *Authority) supersede(kind, serial, by string, revoke bool) error {
	ix, err := a.Store.Index()
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	now := a.now()
	var found *state.Record
	for i := range ix.Records {
		if ix.Records[i].Kind == kind && ix.Records[i].Serial == serial {
			found = &ix.Records[i]
		}
	}
	if found == nil {
		return fmt.Errorf("authority: no %s record with serial %s", kind, serial)
	}
	found.SupersededAt, found.SupersededBy = &now, by
	if revoke && found.RevokedAt == nil {
		found.RevokedAt = &now
	}
	name, notAfter := found.Name, found.NotAfter
	detail := "superseded by " + by
	if revoke {
		detail += "; revoked: the key changed"
	}
	if err := a.audit("supersede", kind, name, serial, notAfter, detail); err != nil {
		return err
	}
	if err := a.Store.SaveIndex(ix); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	if !revoke {
		return nil
	}
	if kind == KindSSHHost {
		_, err := a.KRL()
		return err
	}
	_, err = a.CRL()
	return err
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// BundleSerialsFile holds the serial of every node's last bundle.
const BundleSerialsFile = "nodes/bundle-serials.json"

// ReserveBundleSerials takes the next bundle serial of each node, in one
// write that is saved before any is used: a serial is never given twice and
// never goes back.
func (a *Authority) ReserveBundleSerials(nodes ...string) (map[string]uint64, error) {
	last := map[string]uint64{}
	data, err := a.Store.ReadFile(BundleSerialsFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("authority: %w", err)
	default:
		if err := json.Unmarshal(data, &last); err != nil {
			return nil, fmt.Errorf("authority: %s: %w", BundleSerialsFile, err)
		}
	}
	out := make(map[string]uint64, len(nodes))
	for _, n := range nodes {
		if err := CheckNode(a.Site, n); err != nil {
			return nil, err
		}
		last[n]++
		out[n] = last[n]
	}
	js, err := json.MarshalIndent(last, "", " ")
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := a.write(BundleSerialsFile, append(js, '\n'), privateMode); err != nil {
		return nil, err
	}
	return out, nil
}

// Bundle builds node's bundle: its share of the secrets (see Secrets), the
// site file, a new serial, signed by the CA. The payload says whether it
// carries private keys (a node that imported no request).
func (a *Authority) Bundle(node string) ([]byte, *bundle.Payload, error) {
	return a.BundleWithHostKey(node, nil)
}

// BundleAll builds the bundles of nodes, their serials taken at once, and
// hands each to emit as it is made.
func (a *Authority) BundleAll(nodes []string, emit func(data []byte, p *bundle.Payload) error) error {
	serials, err := a.ReserveBundleSerials(nodes...)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		data, p, err := a.bundle(n, nil, serials[n])
		if err != nil {
			return err
		}
		if err := emit(data, p); err != nil {
			return err
		}
	}
	return nil
}

// BundleWithHostKey is Bundle for a node whose SSH host key was made here
// (a seed): hostKey, an OpenSSH private key, is recorded as the node's host
// key and travels in the bundle with its certificate.
func (a *Authority) BundleWithHostKey(node string, hostKey []byte) ([]byte, *bundle.Payload, error) {
	serials, err := a.ReserveBundleSerials(node)
	if err != nil {
		return nil, nil, err
	}
	return a.bundle(node, hostKey, serials[node])
}

// bundle builds node's bundle with a serial already reserved.
func (a *Authority) bundle(node string, hostKey []byte, serial uint64) ([]byte, *bundle.Payload, error) {
	if hostKey != nil {
		signer, err := ssh.ParsePrivateKey(hostKey)
		if err != nil {
			return nil, nil, fmt.Errorf("authority: bundle: host key: %w", err)
		}
		if err := a.RecordHostKey(node, signer.PublicKey()); err != nil {
			return nil, nil, err
		}
	}
	sec, err := a.Secrets(node)
	if err != nil {
		return nil, nil, err
	}
	ca, _, err := a.CA()
	if err != nil {
		return nil, nil, err
	}
	// A bundle carries the node's view of the site, not the whole site:
	// the nodes it deals with and nothing more.
	view, err := a.Site.ViewFor(node, sec.Addresses)
	if err != nil {
		return nil, nil, fmt.Errorf("authority: bundle: %w", err)
	}
	siteFile, err := view.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("authority: bundle: %w", err)
	}
	s, private := bundle.FromSecrets(view, node, sec)
	if hostKey != nil {
		s.HostKey, private = string(hostKey), true
	}
	if trust := string(sec.CACert); trust != string(pki.EncodeCertPEM(ca.Cert)) {
		// A rotation: the node is told of the new CA by the old one.
		s.CACerts = trust
	}
	detail := "public material only"
	if private {
		detail = "with the node's private keys"
	}
	if err := a.audit("bundle", KindBundle, node, strconv.FormatUint(serial, 10), time.Time{}, detail); err != nil {
		return nil, nil, err
	}
	p := &bundle.Payload{Site: a.Site.Site, Node: node, Serial: serial, Created: a.now(), SiteFile: string(siteFile),
		PrivateKeys: private, Secrets: s}
	data, err := bundle.Sign(p, ca)
	if err != nil {
		return nil, nil, err
	}
	return data, p, nil
}

// RequestSummary is what `node import` reports.
func RequestSummary(c *bundle.Checked) string {
	names := make([]string, 0, len(c.CSRs))
	for n := range c.CSRs {
		names = append(names, n)
	}
	slices.Sort(names)
	js, _ := json.Marshal(names)
	return fmt.Sprintf("node %s: WireGuard %s, SSH host key %s, CSRs %s", c.Node, c.WireGuardPublicKey, ssh.FingerprintSHA256(c.HostKey), js)
}

// KeysHere refuses, as bad input, to build a node's plan on the CA host
// when the node holds its own keys (it imported a request): its private
// keys are not here, so only its bundle can be built here.
func (a *Authority) KeysHere(node string) error {
	ok, err := a.exists(requestFile(node))
	if err != nil {
		return err
	}
	if ok {
		return badInput("node %q holds its own keys (its request was imported): build its bundle with `ztwizard bundle --node %s` and apply it on the node with `ztwizard apply --bundle`", node, node)
	}
	return nil
}

// meshAddresses is MeshAddresses, worked out once per site for the life of
// the Authority (the caller holds the store's lock): building every bundle
// of a site needs them for each node.
func (a *Authority) meshAddresses() (map[string]netip.Addr, error) {
	if a.meshOf == a.Site && a.mesh != nil {
		return maps.Clone(a.mesh), nil
	}
	m, err := a.MeshAddresses()
	if err != nil {
		return nil, err
	}
	a.mesh, a.meshOf = m, a.Site
	return maps.Clone(m), nil
}

package authority

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"path"
	"slices"
	"strings"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

// CA loads the site's X.509 CA, creating it on first use. created tells
// whether it was made now. A CA is made only where there is no trace of
// one: a store that has its key, its CRL, a record of it in the index or
// the audit log, but not its certificate, is an error that changes nothing
// (a new CA would orphan every certificate the old one issued). The key
// must match the certificate.
func (a *Authority) CA() (ca *pki.CA, created bool, err error) {
	ok, err := a.exists(CACertFile)
	if err != nil {
		return nil, false, err
	}
	if ok {
		ca, err := a.loadCAAt(CACertFile, CAKeyFile)
		return ca, false, err
	}
	if err := a.noTraces("the X.509 CA certificate "+CACertFile, []string{CAKeyFile, CRLFile, x509Dir},
		[]string{KindCA, KindClient, KindServer, KindCRL}, CAKeyFile); err != nil {
		return nil, false, err
	}
	ca, err = a.createCA()
	return ca, err == nil, err
}

// loadCAAt loads a CA certificate and its key from the store (the site's
// CA, or the one a rotation brings in) and checks that they match.
func (a *Authority) loadCAAt(certFile, keyFile string) (*pki.CA, error) {
	certPEM, err := a.readFile(certFile)
	if err != nil {
		return nil, err
	}
	cert, err := pki.DecodeCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", certFile, err)
	}
	keyPEM, err := a.readFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := pki.DecodeKeyPEM(keyPEM, a.Passphrase)
	if err != nil {
		return nil, keyError("the CA key "+a.Store.Path(keyFile), err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("authority: the CA key %s does not match the CA certificate %s: refusing to sign with it (restore the pair from a backup)",
			a.Store.Path(keyFile), a.Store.Path(certFile))
	}
	if err := a.encryptIfPlain(keyFile, keyPEM, func() ([]byte, error) { return pki.EncodeKeyPEM(key, a.Passphrase) }); err != nil {
		return nil, err
	}
	return &pki.CA{Cert: cert, Key: key}, nil
}

// encryptIfPlain re-writes a plain private key encrypted when a passphrase
// is given, so giving one protects a store made without it.
func (a *Authority) encryptIfPlain(rel string, current []byte, encode func() ([]byte, error)) error {
	if len(a.Passphrase) == 0 || isEncrypted(current) {
		return nil
	}
	data, err := encode()
	if err != nil {
		return fmt.Errorf("authority: encrypt %s: %w", rel, err)
	}
	if err := a.audit("encrypt", KindPassphrase, rel, "", time.Time{}, "private key now encrypted with the passphrase"); err != nil {
		return err
	}
	return a.write(rel, data, privateMode)
}

func (a *Authority) createCA() (*pki.CA, error) {
	site := a.Site
	kt, err := pki.ParseKeyType(site.CA.Key)
	if err != nil {
		return nil, badInput("ca.key: %v", err)
	}
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return nil, fmt.Errorf("authority: CA key: %w", err)
	}
	serial, err := pki.RandomSerial(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("authority: CA serial: %w", err)
	}
	subj := pki.Subject{CommonName: site.CA.Subject.CommonName, Organization: site.CA.Subject.Organization, Country: site.CA.Subject.Country}
	ca, err := pki.NewRoot(subj, key, site.CA.Validity.D(), a.now(), serial)
	if err != nil {
		return nil, fmt.Errorf("authority: create CA: %w", err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key, a.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("authority: CA key: %w", err)
	}
	// The audit record first: nothing is made that the log does not
	// show. Then the key: a certificate without its key would be useless,
	// and the certificate's presence is what marks the CA as made.
	if err := a.audit("create", KindCA, ca.Cert.Subject.CommonName, hexSerial(ca.Cert.SerialNumber), ca.Cert.NotAfter, "key "+string(kt)); err != nil {
		return nil, err
	}
	if err := a.write(CAKeyFile, keyPEM, privateMode); err != nil {
		return nil, err
	}
	if err := a.write(CACertFile, pki.EncodeCertPEM(ca.Cert), publicMode); err != nil {
		return nil, err
	}
	if err := a.record(state.Record{Kind: KindCA, Name: site.Site, Serial: hexSerial(ca.Cert.SerialNumber),
		Subject: ca.Cert.Subject.String(), NotBefore: ca.Cert.NotBefore, NotAfter: ca.Cert.NotAfter, File: CACertFile}); err != nil {
		return nil, err
	}
	if _, err := a.publishCRL(ca); err != nil {
		return nil, err
	}
	return ca, nil
}

// Issued is a certificate ztwizard has just issued, with its private key.
type Issued struct {
	Record   state.Record
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertFile string // in the store
	KeyFile  string // in the store
}

// Issue issues a certificate for a name of the site: a client identity
// (client certificate, CN = name, O from the site) or a service (server
// certificate for its server_name). keyType "" uses the CA's key type.
func (a *Authority) Issue(name string, keyType string) (*Issued, error) {
	site := a.Site
	kind, err := CheckIssue(site, name, keyType)
	if err != nil {
		return nil, err
	}
	if keyType == "" {
		keyType = site.CA.Key
	}
	kt, err := pki.ParseKeyType(keyType)
	if err != nil {
		return nil, badInput("--key: %v", err)
	}
	ca, key, serial, err := a.prepare(kt)
	if err != nil {
		return nil, fmt.Errorf("authority: issue %s: %w", name, err)
	}
	now, validity := a.now(), site.CA.CertValidity.D()
	var cert *x509.Certificate
	if kind == KindClient {
		c, _ := site.Client(name)
		cert, err = ca.IssueClient(key.Public(), c.Name, c.Organization, validity, now, serial)
	} else {
		s, _ := site.Service(name)
		cert, err = ca.IssueServer(key.Public(), s.ServerName, []string{s.ServerName}, nil, validity, now, serial)
	}
	if err != nil {
		return nil, fmt.Errorf("authority: issue %s: %w", name, err)
	}
	return a.keep(kind, name, cert, key)
}

// prepare loads the CA and makes a key and a serial for a new leaf.
func (a *Authority) prepare(kt pki.KeyType) (*pki.CA, crypto.Signer, *big.Int, error) {
	ca, err := a.issuer()
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := pki.GenerateKey(kt)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key: %w", err)
	}
	// 127 random bits do not repeat (two of 2^127 meet with a chance of
	// about n²/2^128 among n serials): the index is not read to check,
	// so that issuing costs the same with 100,000 records as with none.
	serial, err := pki.RandomSerial(rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("serial: %w", err)
	}
	return ca, key, serial, nil
}

// keep stores a new certificate and its key, and records it: the audit
// record first (if the log cannot be written nothing is issued), then the
// files, then the index entry; if that fails the files are removed again,
// so no key is left that no record names.
func (a *Authority) keep(kind, name string, cert *x509.Certificate, key crypto.Signer) (_ *Issued, err error) {
	dir := path.Join(x509Dir, strings.TrimPrefix(kind, "x509-"), name)
	serial := hexSerial(cert.SerialNumber)
	keyPEM, err := pki.EncodeKeyPEM(key, nil)
	if err != nil {
		return nil, fmt.Errorf("authority: key for %s: %w", name, err)
	}
	certFile, keyFile := path.Join(dir, serial+".pem"), path.Join(dir, serial+"-key.pem")
	if err := a.audit("issue", kind, name, serial, cert.NotAfter, cert.Subject.String()); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.Store.Remove(keyFile)
			a.Store.Remove(certFile)
		}
	}()
	if err := a.Store.WriteFiles(state.File{Rel: keyFile, Data: keyPEM, Perm: privateMode},
		state.File{Rel: certFile, Data: pki.EncodeCertPEM(cert), Perm: publicMode}); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	rec := state.Record{Kind: kind, Name: name, Serial: serial, Subject: cert.Subject.String(),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, File: certFile}
	if err := a.record(rec); err != nil {
		return nil, err
	}
	return &Issued{Record: rec, Cert: cert, Key: key, CertFile: certFile, KeyFile: keyFile}, nil
}

// Current returns the newest unrevoked, unexpired certificate of a name and
// its key, or nil when there is none.
func (a *Authority) Current(kind, name string) (*Issued, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	recs := ix.Find(kind, name)
	now := a.now()
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.RevokedAt != nil || r.SupersededAt != nil || !now.Before(r.NotAfter) {
			continue
		}
		certPEM, err := a.readFile(r.File)
		if err != nil {
			return nil, err
		}
		cert, err := pki.DecodeCertPEM(certPEM)
		if err != nil {
			return nil, fmt.Errorf("authority: %s: %w", r.File, err)
		}
		keyFile := r.File[:len(r.File)-len(".pem")] + "-key.pem"
		keyPEM, err := a.readFile(keyFile)
		if err != nil {
			return nil, err
		}
		key, err := pki.DecodeKeyPEM(keyPEM, nil)
		if err != nil {
			return nil, fmt.Errorf("authority: %s: %w", keyFile, err)
		}
		return &Issued{Record: r, Cert: cert, Key: key, CertFile: r.File, KeyFile: keyFile}, nil
	}
	return nil, nil
}

// Revoke revokes certificates, selected by serial (hex, as `ca list`
// shows) or, when serial is "", every unrevoked certificate of name. It
// publishes a new CRL and returns the revoked records.
func (a *Authority) Revoke(name, serial string) ([]state.Record, error) {
	if _, _, err := a.CA(); err != nil {
		return nil, err
	}
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	now := a.now()
	var done []state.Record
	var names []string
	for i := range ix.Records {
		r := &ix.Records[i]
		if r.Kind != KindClient && r.Kind != KindServer {
			continue
		}
		names = append(names, r.Name)
		if r.RevokedAt != nil {
			continue
		}
		if (serial != "" && r.Serial == normSerial(serial)) || (serial == "" && r.Name == name) {
			r.RevokedAt = &now
			done = append(done, *r)
		}
	}
	if len(done) == 0 {
		if serial != "" {
			return nil, badInput("no unrevoked certificate with serial %s (see `ztwizard ca list`)", serial)
		}
		return nil, badInput("no unrevoked certificate for %q%s (see `ztwizard ca list`)", name, steps.Suggest(name, names))
	}
	if err := a.auditRevoked(done); err != nil {
		return nil, err
	}
	if err := a.Store.SaveIndex(ix); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if _, err := a.CRL(); err != nil {
		return nil, err
	}
	return done, nil
}

// CRL signs and stores a fresh revocation list, returning it as PEM.
// During a rotation each CA signs one, listing every revoked serial (a
// serial is never used twice, so one the other CA issued lists nothing),
// and both are returned: nginx needs a CRL from every CA it trusts.
func (a *Authority) CRL() ([]byte, error) {
	ca, _, err := a.CA()
	if err != nil {
		return nil, err
	}
	out, err := a.publishCRL(ca)
	if err != nil {
		return nil, err
	}
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	if !r.Rotating(KindCA) {
		return out, nil
	}
	next, err := a.loadCAAt(nextFile(CACertFile), nextFile(CAKeyFile))
	if err != nil {
		return nil, err
	}
	more, err := a.publishCRLTo(next, nextFile(CRLFile))
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

func (a *Authority) publishCRL(ca *pki.CA) ([]byte, error) { return a.publishCRLTo(ca, CRLFile) }

func (a *Authority) publishCRLTo(ca *pki.CA, file string) ([]byte, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	var revoked []pki.Revoked
	for _, r := range ix.Records {
		if r.RevokedAt == nil || (r.Kind != KindClient && r.Kind != KindServer) {
			continue
		}
		n, ok := new(big.Int).SetString(r.Serial, 16)
		if !ok {
			return nil, fmt.Errorf("authority: index: bad serial %q", r.Serial)
		}
		revoked = append(revoked, pki.Revoked{Serial: n, At: *r.RevokedAt})
	}
	ix.CRLNumber++
	now := a.now()
	der, err := ca.CRL(revoked, new(big.Int).SetUint64(ix.CRLNumber), now, a.Site.CA.CRLValidity.D())
	if err != nil {
		return nil, fmt.Errorf("authority: sign CRL: %w", err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("authority: sign CRL: %w", err)
	}
	pemCRL := pki.EncodeCRLPEM(der)
	// The audit record, then the CRL number (so it is never used twice),
	// then the CRL.
	if err := a.audit("publish", KindCRL, ca.Cert.Subject.CommonName, fmt.Sprint(ix.CRLNumber), crl.NextUpdate,
		fmt.Sprintf("%d revoked", len(revoked))); err != nil {
		return nil, err
	}
	if err := a.Store.SaveIndex(ix); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := a.write(file, pemCRL, publicMode); err != nil {
		return nil, err
	}
	return pemCRL, nil
}

// CRLNextUpdate reads the stored CRL's nextUpdate (during a rotation the
// sooner of the two CRLs'), or zero when there is none.
func (a *Authority) CRLNextUpdate() (time.Time, error) {
	files, err := a.crlFiles()
	if err != nil {
		return time.Time{}, err
	}
	var soonest time.Time
	for _, f := range files {
		ok, err := a.exists(f)
		if err != nil || !ok {
			return time.Time{}, err
		}
		data, err := a.readFile(f)
		if err != nil {
			return time.Time{}, err
		}
		der, err := pemBody(data, "X509 CRL")
		if err != nil {
			return time.Time{}, fmt.Errorf("authority: %s: %w", f, err)
		}
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return time.Time{}, fmt.Errorf("authority: %s: %w", f, err)
		}
		if soonest.IsZero() || crl.NextUpdate.Before(soonest) {
			soonest = crl.NextUpdate
		}
	}
	return soonest, nil
}

// CRLDue tells whether the CRL should be re-signed now: it is missing, or
// its nextUpdate is within the site's Timing().CRLMargin: half its
// validity.
func (a *Authority) CRLDue() (bool, error) {
	next, err := a.CRLNextUpdate()
	if err != nil {
		return false, err
	}
	return next.IsZero() || !a.now().Add(a.Site.Timing().CRLMargin).Before(next), nil
}

// List returns every record in the index, oldest first.
func (a *Authority) List() ([]state.Record, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	return slices.Clone(ix.Records), nil
}

func (a *Authority) record(r state.Record) error {
	if err := a.Store.AddRecord(r); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	return nil
}

func hexSerial(n *big.Int) string { return n.Text(16) }

// normSerial accepts a serial as openssl prints it (upper case, colons).
func normSerial(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r == ':':
		case r >= 'A' && r <= 'F':
			out = append(out, r+('a'-'A'))
		default:
			out = append(out, r)
		}
	}
	n, ok := new(big.Int).SetString(string(out), 16)
	if !ok {
		return string(out)
	}
	return n.Text(16)
}

package authority

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
)

// RotationFile records a CA rotation in the state store.
const RotationFile = "rotate.json"

// Phases of a CA rotation. Between init and finish both the old and the new
// CA are trusted everywhere (the overlap); leaves are issued by the old CA
// in init and by the new one from reissue on.
const (
	PhaseNone        = ""             // no rotation in progress
	PhaseInit        = "init"         // the new CA made and trusted beside the old
	PhaseReissue     = "reissue"      // every leaf issued again under the new CA
	PhaseFinish      = "finish"       // asked for: the old CA dropped from every trust file
	PhaseRollback    = "rollback"     // asked for: back to the old CA alone
	phaseFinishing   = "finishing"    // finish begun and not completed
	phaseRollingBack = "rolling-back" // rollback begun and not completed
)

// cutAfter, set by tests, makes a finish or rollback stop right after it
// copied a CA file to that name, as a process killed there would.
var (
	cutAfter string
	errCut   = errors.New("authority: finish cut short (test)")
)

// RotatableCAs are the CAs `ca rotate --ca` names, in order.
var RotatableCAs = []string{KindCA, KindSSHUserCA, KindSSHHostCA}

// Rotation is the state of a CA rotation (RotationFile).
type Rotation struct {
	Phase   string    `json:"phase"`
	CAs     []string  `json:"cas,omitempty"` // kinds being rotated, of RotatableCAs
	Started time.Time `json:"started,omitzero"`
	Changed time.Time `json:"changed,omitzero"`
	// From is the phase a finish or rollback began in.
	From string `json:"from,omitempty"`
	// Retire names, per CA kind, the folder under retired/ that keeps the
	// CA going out (the old one at finish, the new one at rollback).
	Retire map[string]string `json:"retire,omitempty"`
	// Resign lists the SSH users whose current certificates the CA that
	// signs from now on did not sign: they need `ssh sign` again.
	Resign []string `json:"resign,omitempty"`
	// Last says how the previous rotation ended, and when.
	Last string `json:"last,omitempty"`
}

// Rotating tells whether kind's CA has a successor trusted beside it.
func (r *Rotation) Rotating(kind string) bool {
	switch r.Phase {
	case PhaseInit, PhaseReissue, phaseRollingBack, phaseFinishing:
		return slices.Contains(r.CAs, kind)
	}
	return false
}

// issuingNext tells whether leaves of kind's CA are issued by the new CA.
func (r *Rotation) issuingNext(kind string) bool {
	return r.Phase == PhaseReissue && slices.Contains(r.CAs, kind)
}

// nextFile is where a store file of the CA being rotated in lives:
// "ca/ca.pem" -> "ca/next/ca.pem".
func nextFile(rel string) string { return path.Join(path.Dir(rel), "next", path.Base(rel)) }

// retiredFile is where a store file of a retired CA is kept.
func retiredFile(rel, id string) string {
	return path.Join(path.Dir(rel), "retired", id, path.Base(rel))
}

// caFiles are a CA's store files, the certificate or public key last: its
// presence marks the CA as complete.
func caFiles(kind string) []string {
	switch kind {
	case KindCA:
		return []string{CAKeyFile, CRLFile, CACertFile}
	case KindSSHUserCA:
		return []string{SSHUserCAFile, SSHUserCAFile + ".pub"}
	}
	return []string{SSHHostCAFile, SSHHostCAFile + ".pub"}
}

// Rotation reads the rotation state; a store that never rotated has an
// empty one.
func (a *Authority) Rotation() (*Rotation, error) {
	data, err := a.Store.ReadFile(RotationFile)
	if errors.Is(err, os.ErrNotExist) {
		return &Rotation{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	var r Rotation
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("authority: %s: %w", a.Store.Path(RotationFile), err)
	}
	return &r, nil
}

func (a *Authority) saveRotation(r *Rotation) error {
	r.Changed = a.now()
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	return a.write(RotationFile, append(data, '\n'), privateMode)
}

// settled refuses work that needs a settled rotation state: a finish or a
// rollback cut short must be run again first.
func (r *Rotation) settled() error {
	switch r.Phase {
	case phaseFinishing:
		return badInput("a CA rotation's finish was cut short: run `ztwizard ca rotate --phase finish` again")
	case phaseRollingBack:
		return badInput("a CA rotation's rollback was cut short: run `ztwizard ca rotate --phase rollback` again")
	}
	return nil
}

// issuer is the X.509 CA that issues leaves now: the new one from the
// reissue phase of a rotation on, else the site's CA.
func (a *Authority) issuer() (*pki.CA, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	if r.issuingNext(KindCA) {
		return a.loadCAAt(nextFile(CACertFile), nextFile(CAKeyFile))
	}
	ca, _, err := a.CA()
	return ca, err
}

// issuerCert is the certificate of issuer, without reading its key.
func (a *Authority) issuerCert() (*x509.Certificate, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	rel := CACertFile
	if r.issuingNext(KindCA) {
		rel = nextFile(CACertFile)
	}
	return a.readCert(rel)
}

func (a *Authority) readCert(rel string) (*x509.Certificate, error) {
	data, err := a.readFile(rel)
	if err != nil {
		return nil, err
	}
	c, err := pki.DecodeCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", rel, err)
	}
	return c, nil
}

// sshIssuer is the SSH CA of kind that signs now.
func (a *Authority) sshIssuer(kind string) (crypto.Signer, ssh.PublicKey, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, nil, err
	}
	if r.issuingNext(kind) {
		return a.loadSSHCAAt(kind, nextFile(sshCAFile(kind)))
	}
	return a.SSHCA(kind)
}

func sshCAFile(kind string) string {
	if kind == KindSSHHostCA {
		return SSHHostCAFile
	}
	return SSHUserCAFile
}

// loadSSHCAAt reads an SSH CA key and checks it against its .pub.
func (a *Authority) loadSSHCAAt(kind, rel string) (crypto.Signer, ssh.PublicKey, error) {
	data, err := a.readFile(rel)
	if err != nil {
		return nil, nil, err
	}
	key, err := sshca.DecodePrivateKey(data, a.Passphrase)
	if err != nil {
		return nil, nil, keyError("the SSH CA key "+a.Store.Path(rel), err)
	}
	if err := a.matchSSHPub(rel, key); err != nil {
		return nil, nil, err
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("authority: %s public key: %w", kind, err)
	}
	return key, pub, nil
}

// trustedCerts are the X.509 CA certificates a node trusts now: the
// site's CA and, during a rotation, the new one.
func (a *Authority) trustedCerts() ([]*x509.Certificate, error) {
	ca, _, err := a.CA()
	if err != nil {
		return nil, err
	}
	out := []*x509.Certificate{ca.Cert}
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	if r.Rotating(KindCA) {
		c, err := a.readCert(nextFile(CACertFile))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// trustPEM is trustedCerts as PEM, what nginx's ssl_client_certificate
// file holds.
func (a *Authority) trustPEM() ([]byte, error) {
	certs, err := a.trustedCerts()
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, c := range certs {
		out = append(out, pki.EncodeCertPEM(c)...)
	}
	return out, nil
}

// crlFiles are the CRLs published now: the site CA's and, during a
// rotation, the new CA's.
func (a *Authority) crlFiles() ([]string, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	if r.Rotating(KindCA) {
		return []string{CRLFile, nextFile(CRLFile)}, nil
	}
	return []string{CRLFile}, nil
}

// crlPEM is every published CRL, what nginx's ssl_crl file holds: nginx
// needs one from each CA it trusts.
func (a *Authority) crlPEM() ([]byte, error) {
	files, err := a.crlFiles()
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, f := range files {
		data, err := a.readFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, data...)
	}
	return out, nil
}

// trustedSSH are the public keys of kind's SSH CAs trusted now, and their
// lines (what TrustedUserCAKeys reads, or the host CA lines).
func (a *Authority) trustedSSH(kind string) ([]ssh.PublicKey, []byte, error) {
	_, pub, err := a.SSHCA(kind)
	if err != nil {
		return nil, nil, err
	}
	line, err := a.readFile(sshCAFile(kind) + ".pub")
	if err != nil {
		return nil, nil, err
	}
	pubs, lines := []ssh.PublicKey{pub}, bytes.Clone(line)
	r, err := a.Rotation()
	if err != nil {
		return nil, nil, err
	}
	if r.Rotating(kind) {
		next, err := a.readFile(nextFile(sshCAFile(kind)) + ".pub")
		if err != nil {
			return nil, nil, err
		}
		p, _, _, _, err := ssh.ParseAuthorizedKey(next)
		if err != nil {
			return nil, nil, fmt.Errorf("authority: %s: %w", nextFile(sshCAFile(kind))+".pub", err)
		}
		pubs = append(pubs, p)
		if !bytes.HasSuffix(lines, []byte("\n")) {
			lines = append(lines, '\n')
		}
		lines = append(lines, next...)
	}
	return pubs, lines, nil
}

// parseCAs checks the --ca value of `ca rotate`: x509, ssh-user, ssh-host
// or all, comma separated.
func parseCAs(list []string) ([]string, error) {
	var out []string
	for _, v := range list {
		for _, w := range strings.Split(v, ",") {
			var kinds []string
			switch strings.TrimSpace(w) {
			case "all":
				kinds = RotatableCAs
			case "x509":
				kinds = []string{KindCA}
			case "ssh-user":
				kinds = []string{KindSSHUserCA}
			case "ssh-host":
				kinds = []string{KindSSHHostCA}
			default:
				return nil, badInput("--ca %q: want x509, ssh-user, ssh-host or all", w)
			}
			for _, k := range kinds {
				if !slices.Contains(out, k) {
					out = append(out, k)
				}
			}
		}
	}
	if len(out) == 0 {
		out = slices.Clone(RotatableCAs)
	}
	slices.SortFunc(out, func(x, y string) int { return slices.Index(RotatableCAs, x) - slices.Index(RotatableCAs, y) })
	return out, nil
}

// ParseCAs checks the --ca value of `ca rotate` (x509, ssh-user, ssh-host,
// all; several comma separated or repeated) and returns the CA kinds; none
// given means all.
func ParseCAs(list []string) ([]string, error) { return parseCAs(list) }

// RotateInit begins a rotation of the CAs of kinds (ParseCAs): it makes a
// new CA beside each old one (under next/ in the store, its key encrypted
// like the old) and from then on every plan and bundle trusts both. Leaves
// are still issued by the old CAs. Run again after an interruption it
// completes what is missing, reusing a key already made.
func (a *Authority) RotateInit(kinds []string) (*Rotation, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	if err := r.settled(); err != nil {
		return nil, err
	}
	switch {
	case r.Phase == PhaseReissue:
		return nil, badInput("a CA rotation is in its reissue phase: finish it (--phase finish) or roll it back (--phase rollback) first")
	case r.Phase == PhaseInit && !slices.Equal(r.CAs, kinds):
		return nil, badInput("a rotation of %s is in its init phase: finish or roll it back before rotating %s", caNames(r.CAs), caNames(kinds))
	}
	for _, k := range kinds {
		var ok bool
		if ok, err = a.exists(caFiles(k)[len(caFiles(k))-1]); err != nil {
			return nil, err
		}
		if !ok {
			return nil, badInput("there is no %s to rotate yet (ztwizard ca init makes it)", k)
		}
		// Loading the old CA checks the passphrase the new one is
		// encrypted with.
		if k == KindCA {
			_, _, err = a.CA()
		} else {
			_, _, err = a.SSHCA(k)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := a.audit("rotate-init", "rotation", a.Site.Site, "", time.Time{}, "new CA beside the old: "+caNames(kinds)); err != nil {
		return nil, err
	}
	for _, k := range kinds {
		if k == KindCA {
			err = a.makeNextCA()
		} else {
			err = a.makeNextSSHCA(k)
		}
		if err != nil {
			return nil, err
		}
	}
	if r.Phase != PhaseInit {
		r = &Rotation{Phase: PhaseInit, CAs: kinds, Started: a.now(), Last: r.Last}
	}
	if err := a.saveRotation(r); err != nil {
		return nil, err
	}
	if slices.Contains(kinds, KindCA) {
		// Both CRLs fresh, so nginx has one from each CA.
		if _, err := a.CRL(); err != nil {
			return nil, err
		}
	}
	if slices.Contains(kinds, KindSSHUserCA) || slices.Contains(kinds, KindSSHHostCA) {
		if _, err := a.KRL(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func caNames(kinds []string) string { return strings.Join(kinds, ", ") }

// makeNextCA makes the new X.509 CA under ca/next/, reusing a key or a
// certificate a cut-short run left.
func (a *Authority) makeNextCA() error {
	certRel, keyRel := nextFile(CACertFile), nextFile(CAKeyFile)
	if ok, err := a.exists(certRel); err != nil {
		return err
	} else if ok {
		_, err := a.loadCAAt(certRel, keyRel)
		if err == nil {
			err = a.ensureNextCRL()
		}
		return err
	}
	site := a.Site
	kt, err := pki.ParseKeyType(site.CA.Key)
	if err != nil {
		return badInput("ca.key: %v", err)
	}
	var key crypto.Signer
	if ok, err := a.exists(keyRel); err != nil {
		return err
	} else if ok {
		data, err := a.readFile(keyRel)
		if err != nil {
			return err
		}
		if key, err = pki.DecodeKeyPEM(data, a.Passphrase); err != nil {
			return keyError("the new CA key "+a.Store.Path(keyRel), err)
		}
	} else {
		if key, err = pki.GenerateKey(kt); err != nil {
			return fmt.Errorf("authority: new CA key: %w", err)
		}
		keyPEM, err := pki.EncodeKeyPEM(key, a.Passphrase)
		if err != nil {
			return fmt.Errorf("authority: new CA key: %w", err)
		}
		if err := a.audit("create", KindCA, site.CA.Subject.CommonName, "", time.Time{}, "key "+string(kt)+" of the CA rotated in, "+keyRel); err != nil {
			return err
		}
		if err := a.write(keyRel, keyPEM, privateMode); err != nil {
			return err
		}
	}
	serial, err := pki.RandomSerial(rand.Reader)
	if err != nil {
		return fmt.Errorf("authority: CA serial: %w", err)
	}
	subj := pki.Subject{CommonName: site.CA.Subject.CommonName, Organization: site.CA.Subject.Organization, Country: site.CA.Subject.Country}
	ca, err := pki.NewRoot(subj, key, site.CA.Validity.D(), a.now(), serial)
	if err != nil {
		return fmt.Errorf("authority: create the new CA: %w", err)
	}
	if err := a.audit("create", KindCA, ca.Cert.Subject.CommonName, hexSerial(ca.Cert.SerialNumber), ca.Cert.NotAfter, "the CA rotated in, "+certRel); err != nil {
		return err
	}
	if err := a.write(certRel, pki.EncodeCertPEM(ca.Cert), publicMode); err != nil {
		return err
	}
	if err := a.record(state.Record{Kind: KindCA, Name: site.Site, Serial: hexSerial(ca.Cert.SerialNumber),
		Subject: ca.Cert.Subject.String(), NotBefore: ca.Cert.NotBefore, NotAfter: ca.Cert.NotAfter, File: certRel}); err != nil {
		return err
	}
	return a.ensureNextCRL()
}

// ensureNextCRL publishes the new CA's first CRL if it has none.
func (a *Authority) ensureNextCRL() error {
	if ok, err := a.exists(nextFile(CRLFile)); err != nil || ok {
		return err
	}
	ca, err := a.loadCAAt(nextFile(CACertFile), nextFile(CAKeyFile))
	if err != nil {
		return err
	}
	_, err = a.publishCRLTo(ca, nextFile(CRLFile))
	return err
}

// makeNextSSHCA makes the new SSH CA of kind under ssh/next/, reusing a
// key a cut-short run left.
func (a *Authority) makeNextSSHCA(kind string) error {
	rel := nextFile(sshCAFile(kind))
	var key crypto.Signer
	if ok, err := a.exists(rel); err != nil {
		return err
	} else if ok {
		data, err := a.readFile(rel)
		if err != nil {
			return err
		}
		if key, err = sshca.DecodePrivateKey(data, a.Passphrase); err != nil {
			return keyError("the new SSH CA key "+a.Store.Path(rel), err)
		}
	} else {
		priv, err := sshca.GenerateKey()
		if err != nil {
			return fmt.Errorf("authority: %s key: %w", kind, err)
		}
		key = priv
		data, err := sshca.EncodePrivateKey(key, a.caComment(kind), a.Passphrase)
		if err != nil {
			return fmt.Errorf("authority: %s key: %w", kind, err)
		}
		pub, err := ssh.NewPublicKey(key.Public())
		if err != nil {
			return fmt.Errorf("authority: %s public key: %w", kind, err)
		}
		if err := a.audit("create", kind, a.caComment(kind), "", time.Time{}, ssh.FingerprintSHA256(pub)+", the CA rotated in, "+rel); err != nil {
			return err
		}
		if err := a.write(rel, data, privateMode); err != nil {
			return err
		}
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("authority: %s public key: %w", kind, err)
	}
	return a.write(rel+".pub", []byte(sshca.PublicKeyLine(pub, a.caComment(kind))), publicMode)
}

// RotateReissue moves a rotation from init to reissue: from now on the new
// CAs issue, and every leaf is issued again under them: each node's server
// certificates and SSH host certificate (as its plan or bundle would, see
// Secrets), each client certificate (a new key; the old certificate is
// superseded, and still trusted until finish). SSH user certificates
// cannot be re-signed without their owner: the users are listed in
// Rotation.Resign. It returns the records issued. Run again, it issues
// only what is still under the old CA.
func (a *Authority) RotateReissue() (*Rotation, []state.Record, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, nil, err
	}
	if err := r.settled(); err != nil {
		return nil, nil, err
	}
	if r.Phase != PhaseInit && r.Phase != PhaseReissue {
		return nil, nil, badInput("no CA rotation in its init phase: begin one with `ztwizard ca rotate --phase init`")
	}
	if err := a.checkKeys(r.CAs); err != nil {
		return nil, nil, err
	}
	if err := a.audit("rotate-reissue", "rotation", a.Site.Site, "", time.Time{}, "leaves issued under the new CA: "+caNames(r.CAs)); err != nil {
		return nil, nil, err
	}
	r.Phase = PhaseReissue
	if err := a.saveRotation(r); err != nil {
		return nil, nil, err
	}
	recs, err := a.reissueLeaves(r)
	if err != nil {
		return nil, nil, err
	}
	return r, recs, nil
}

// reissueLeaves issues every leaf the current issuers did not sign again,
// records in r the SSH users to re-sign, and returns the new records.
func (a *Authority) reissueLeaves(r *Rotation) ([]state.Record, error) {
	before, err := a.List()
	if err != nil {
		return nil, err
	}
	for _, n := range a.Site.Nodes {
		if _, err := a.Secrets(n.Name); err != nil {
			return nil, fmt.Errorf("authority: reissue for node %s: %w", n.Name, err)
		}
	}
	issuer, err := a.issuerCert()
	if err != nil {
		return nil, err
	}
	for _, c := range a.Site.Clients {
		cur, err := a.Current(KindClient, c.Name)
		if err != nil {
			return nil, err
		}
		if cur == nil || cur.Cert.CheckSignatureFrom(issuer) == nil {
			continue
		}
		is, err := a.Issue(c.Name, "")
		if err != nil {
			return nil, err
		}
		if err := a.supersede(KindClient, cur.Record.Serial, is.Record.Serial, false); err != nil {
			return nil, err
		}
	}
	_, userCA, err := a.sshIssuer(KindSSHUserCA)
	if err != nil {
		return nil, err
	}
	after, err := a.List()
	if err != nil {
		return nil, err
	}
	r.Resign = nil
	now := a.now()
	for _, rec := range after {
		if rec.Kind != KindSSHUser || rec.RevokedAt != nil || rec.SupersededAt != nil || !now.Before(rec.NotAfter) {
			continue
		}
		line, err := a.readFile(rec.File)
		if err != nil {
			return nil, err
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("authority: %s: %w", rec.File, err)
		}
		if c, ok := k.(*ssh.Certificate); ok && !bytes.Equal(c.SignatureKey.Marshal(), userCA.Marshal()) && !slices.Contains(r.Resign, rec.Name) {
			r.Resign = append(r.Resign, rec.Name)
		}
	}
	if err := a.saveRotation(r); err != nil {
		return nil, err
	}
	return after[len(before):], nil
}

// RotateFinish ends a rotation: the new CAs take the old ones' places in
// the store, the old ones (keys included) move to retired/ with their
// records kept for audit, and from then on no trust file names them. A
// finish cut short is completed by running it again.
func (a *Authority) RotateFinish() (*Rotation, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	switch r.Phase {
	case PhaseReissue:
		if err := a.checkKeys(r.CAs); err != nil {
			return nil, err
		}
		if err := a.audit("rotate-finish", "rotation", a.Site.Site, "", time.Time{}, "the old CA dropped from every trust file: "+caNames(r.CAs)); err != nil {
			return nil, err
		}
		r.Retire = map[string]string{}
		for _, k := range r.CAs {
			id, err := a.caID(k, caFiles(k)[len(caFiles(k))-1])
			if err != nil {
				return nil, err
			}
			r.Retire[k] = id
		}
		r.From, r.Phase = r.Phase, phaseFinishing
		if err := a.saveRotation(r); err != nil {
			return nil, err
		}
	case phaseFinishing:
		if err := a.audit("rotate-finish", "rotation", a.Site.Site, "", time.Time{}, "completing a finish cut short"); err != nil {
			return nil, err
		}
	case PhaseInit:
		return nil, badInput("the rotation is in its init phase: run --phase reissue first, so no leaf is left under the CA that goes")
	default:
		return nil, badInput("no CA rotation in progress (begin one with `ztwizard ca rotate --phase init`)")
	}
	for _, k := range r.CAs {
		if err := a.retire(k, r.Retire[k], caFiles(k)); err != nil {
			return nil, err
		}
		for _, f := range caFiles(k) {
			if err := a.copyFile(nextFile(f), f); err != nil {
				return nil, err
			}
		}
		if k == KindCA {
			if err := a.moveRecord(r.Retire[k], retiredFile(CACertFile, r.Retire[k]), CACertFile); err != nil {
				return nil, err
			}
		}
		if err := a.removeNext(k); err != nil {
			return nil, err
		}
	}
	return r, a.settle(r, "finished")
}

// RotateRollback abandons a rotation before its finish: the old CAs issue
// again, every leaf the new ones issued is issued again under the old, the
// new CAs (keys included) move to retired/ and no trust file names them.
func (a *Authority) RotateRollback() (*Rotation, error) {
	r, err := a.Rotation()
	if err != nil {
		return nil, err
	}
	switch r.Phase {
	case PhaseInit, PhaseReissue:
		if err := a.checkKeys(r.CAs); err != nil {
			return nil, err
		}
		if err := a.audit("rotate-rollback", "rotation", a.Site.Site, "", time.Time{}, "back to the old CA: "+caNames(r.CAs)); err != nil {
			return nil, err
		}
		r.Retire = map[string]string{}
		for _, k := range r.CAs {
			id, err := a.caID(k, nextFile(caFiles(k)[len(caFiles(k))-1]))
			if err != nil {
				return nil, err
			}
			r.Retire[k] = id
		}
		r.From, r.Phase = r.Phase, phaseRollingBack
		if err := a.saveRotation(r); err != nil {
			return nil, err
		}
	case phaseRollingBack:
		if err := a.audit("rotate-rollback", "rotation", a.Site.Site, "", time.Time{}, "completing a rollback cut short"); err != nil {
			return nil, err
		}
	case phaseFinishing:
		return nil, badInput("the rotation's finish has begun: run --phase finish again to complete it; it cannot be rolled back")
	default:
		return nil, badInput("no CA rotation in progress to roll back")
	}
	// Both CAs are still trusted while the leaves go back to the old.
	if r.From == PhaseReissue {
		if _, err := a.reissueLeaves(r); err != nil {
			return nil, err
		}
	}
	for _, k := range r.CAs {
		next := make([]string, 0, 3)
		for _, f := range caFiles(k) {
			next = append(next, nextFile(f))
		}
		if err := a.retireAs(k, r.Retire[k], caFiles(k), next); err != nil {
			return nil, err
		}
		if k == KindCA {
			if err := a.moveRecord(r.Retire[k], retiredFile(CACertFile, r.Retire[k]), ""); err != nil {
				return nil, err
			}
		}
		if err := a.removeNext(k); err != nil {
			return nil, err
		}
	}
	if r.From != PhaseReissue {
		r.Resign = nil
	}
	return r, a.settle(r, "rolled back")
}

// checkKeys loads the old and the new key of each CA kind, so a finish or
// rollback with a missing or wrong passphrase stops before it begins (it
// signs a CRL and a KRL at its end).
func (a *Authority) checkKeys(kinds []string) error {
	for _, k := range kinds {
		var err error
		if k == KindCA {
			if _, _, err = a.CA(); err == nil {
				_, err = a.loadCAAt(nextFile(CACertFile), nextFile(CAKeyFile))
			}
		} else if _, _, err = a.SSHCA(k); err == nil {
			_, _, err = a.loadSSHCAAt(k, nextFile(sshCAFile(k)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// settle ends a finish or rollback: the rotation is over, and the CRL and
// KRL are published again for the CAs trusted now.
func (a *Authority) settle(r *Rotation, how string) error {
	cas := r.CAs
	*r = Rotation{Phase: PhaseNone, Last: fmt.Sprintf("%s %s at %s", caNames(cas), how, a.now().Format(time.RFC3339)), Resign: r.Resign}
	if err := a.saveRotation(r); err != nil {
		return err
	}
	if slices.Contains(cas, KindCA) {
		if _, err := a.CRL(); err != nil {
			return err
		}
	}
	if slices.Contains(cas, KindSSHUserCA) || slices.Contains(cas, KindSSHHostCA) {
		if _, err := a.KRL(); err != nil {
			return err
		}
	}
	return nil
}

// caID names a CA's folder under retired/: the X.509 CA's serial, an SSH
// CA's SHA-256 fingerprint in hex.
func (a *Authority) caID(kind, rel string) (string, error) {
	if kind == KindCA {
		c, err := a.readCert(rel)
		if err != nil {
			return "", err
		}
		return hexSerial(c.SerialNumber), nil
	}
	data, err := a.readFile(rel)
	if err != nil {
		return "", err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return "", fmt.Errorf("authority: %s: %w", rel, err)
	}
	return sshCAID(pub), nil
}

// sshCAID is an SSH CA's SHA-256 fingerprint, made fit for a file name.
func sshCAID(pub ssh.PublicKey) string {
	fp := strings.TrimPrefix(ssh.FingerprintSHA256(pub), "SHA256:")
	return strings.NewReplacer("/", "_", "+", "-").Replace(fp)
}

// retire copies a CA's files (caFiles order) to retired/id/, unless that
// copy is complete already (its last file is there).
func (a *Authority) retire(kind, id string, files []string) error {
	return a.retireAs(kind, id, files, files)
}

// retireAs copies the files from (in caFiles order) to retired/id/ under
// the names of files.
func (a *Authority) retireAs(kind, id string, files, from []string) error {
	if id == "" {
		return fmt.Errorf("authority: no retired name recorded for %s", kind)
	}
	last := retiredFile(files[len(files)-1], id)
	if ok, err := a.exists(last); err != nil || ok {
		return err
	}
	for i, f := range files {
		if err := a.copyFile(from[i], retiredFile(f, id)); err != nil {
			return err
		}
	}
	return nil
}

// copyFile copies a store file, keeping its mode's kind (private or
// public). A missing source whose copy is there is done already.
func (a *Authority) copyFile(from, to string) error {
	data, err := a.Store.ReadFile(from)
	if errors.Is(err, os.ErrNotExist) {
		if ok, err := a.exists(to); err != nil || ok {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	if cur, err := a.Store.ReadFile(to); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	mode := os.FileMode(publicMode)
	if strings.HasSuffix(from, "-key.pem") || !strings.Contains(path.Base(from), ".") {
		mode = privateMode
	}
	if err := a.write(to, data, mode); err != nil {
		return err
	}
	if to == cutAfter {
		return errCut
	}
	return nil
}

// removeNext removes the next/ files of kind's CA, and the folder once
// empty; gone ones are fine.
func (a *Authority) removeNext(kind string) error {
	for _, f := range caFiles(kind) {
		if err := a.Store.Remove(nextFile(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("authority: %w", err)
		}
	}
	a.Store.Remove(path.Dir(nextFile(caFiles(kind)[0]))) // kept while another CA's files are there
	return nil
}

// moveRecord points the index's X.509 CA records at their files after a
// finish or rollback: the one of serial retired to retiredRel (and marked
// superseded), the one still at the next/ path to to.
func (a *Authority) moveRecord(serial, retiredRel, to string) error {
	ix, err := a.Store.Index()
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	changed := false
	for i := range ix.Records {
		rec := &ix.Records[i]
		if rec.Kind != KindCA {
			continue
		}
		switch {
		case rec.Serial == serial && rec.File != retiredRel:
			rec.File, changed = retiredRel, true
			now := a.now()
			rec.SupersededAt = &now
		case rec.Serial != serial && rec.File == nextFile(CACertFile):
			rec.File, changed = to, true
		}
	}
	if !changed {
		return nil
	}
	if err := a.Store.SaveIndex(ix); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	return nil
}

// byIssuer tells whether cert was issued by the CA that issues now; a leaf
// that was not is due (a rotation's reissue and rollback rely on it). An
// issuer that cannot be read counts as a match: issuing would fail anyway.
func (a *Authority) byIssuer(cert *x509.Certificate) bool {
	issuer, err := a.issuerCert()
	return err != nil || cert.CheckSignatureFrom(issuer) == nil
}

// bySSHIssuer tells whether cert was signed by kind's SSH CA that signs now.
func (a *Authority) bySSHIssuer(kind string, cert *ssh.Certificate) bool {
	r, err := a.Rotation()
	if err != nil {
		return true
	}
	rel := sshCAFile(kind) + ".pub"
	if r.issuingNext(kind) {
		rel = nextFile(sshCAFile(kind)) + ".pub"
	}
	data, err := a.readFile(rel)
	if err != nil {
		return true
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	return err != nil || bytes.Equal(pub.Marshal(), cert.SignatureKey.Marshal())
}

// TrustPEM is every X.509 CA certificate to trust now, PEM: the site's CA
// and, during a rotation, the new one. Clients need both during the
// overlap, as server certificates move to the new CA at reissue.
func (a *Authority) TrustPEM() ([]byte, error) { return a.trustPEM() }

// IssuerOf returns the trusted CA certificate that signed cert: the site's
// CA, or during a rotation the new one.
func (a *Authority) IssuerOf(cert *x509.Certificate) (*x509.Certificate, error) {
	certs, err := a.trustedCerts()
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		if cert.CheckSignatureFrom(c) == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("authority: %s was signed by no CA trusted now", cert.Subject)
}

// TrustedSSH returns the public keys of kind's SSH CAs trusted now: the
// site's and, during a rotation, the new one.
func (a *Authority) TrustedSSH(kind string) ([]ssh.PublicKey, error) {
	pubs, _, err := a.trustedSSH(kind)
	return pubs, err
}

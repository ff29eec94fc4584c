package authority

import (
	"crypto"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
)

// SSHCA loads the SSH user CA (kind KindSSHUserCA) or host CA
// (KindSSHHostCA), creating it on first use. As for the X.509 CA, it is
// made only where there is no trace of one (its .pub, certificates it
// signed in the index, its records in the audit log), and its key must
// match its .pub.
func (a *Authority) SSHCA(kind string) (crypto.Signer, ssh.PublicKey, error) {
	rel, certKind := SSHUserCAFile, KindSSHUser
	if kind == KindSSHHostCA {
		rel, certKind = SSHHostCAFile, KindSSHHost
	}
	ok, err := a.exists(rel)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		if err := a.noTraces("the "+kind+" key "+rel, []string{rel + ".pub", KRLFile}, []string{kind, certKind, KindKRL}, rel); err != nil {
			return nil, nil, err
		}
	}
	var key crypto.Signer
	if ok {
		data, err := a.readFile(rel)
		if err != nil {
			return nil, nil, err
		}
		key, err = sshca.DecodePrivateKey(data, a.Passphrase)
		if err != nil {
			return nil, nil, keyError("the SSH CA key "+a.Store.Path(rel), err)
		}
		if err := a.matchSSHPub(rel, key); err != nil {
			return nil, nil, err
		}
		if err := a.encryptIfPlain(rel, data, func() ([]byte, error) {
			return sshca.EncodePrivateKey(key, a.caComment(kind), a.Passphrase)
		}); err != nil {
			return nil, nil, err
		}
	} else {
		priv, err := sshca.GenerateKey()
		if err != nil {
			return nil, nil, fmt.Errorf("authority: %s key: %w", kind, err)
		}
		key = priv
		data, err := sshca.EncodePrivateKey(key, a.caComment(kind), a.Passphrase)
		if err != nil {
			return nil, nil, fmt.Errorf("authority: %s key: %w", kind, err)
		}
		pub, err := ssh.NewPublicKey(key.Public())
		if err != nil {
			return nil, nil, fmt.Errorf("authority: %s public key: %w", kind, err)
		}
		if err := a.audit("create", kind, a.caComment(kind), "", time.Time{}, ssh.FingerprintSHA256(pub)); err != nil {
			return nil, nil, err
		}
		if err := a.write(rel, data, privateMode); err != nil {
			return nil, nil, err
		}
		if err := a.write(rel+".pub", []byte(sshca.PublicKeyLine(pub, a.caComment(kind))), publicMode); err != nil {
			return nil, nil, err
		}
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("authority: %s public key: %w", kind, err)
	}
	return key, pub, nil
}

func (a *Authority) caComment(kind string) string {
	if kind == KindSSHHostCA {
		return a.Site.Site + " ssh host CA"
	}
	return a.Site.Site + " ssh user CA"
}

// SSHSigned is an SSH certificate ztwizard has just signed.
type SSHSigned struct {
	Record state.Record
	Cert   *ssh.Certificate
	Line   string // the KEY-cert.pub line
}

// SignUser signs a user's public key with the user CA. The principals are
// the site's for that user unless principals is given; validity 0 uses the
// site's ssh.cert_validity.
func (a *Authority) SignUser(user string, pub ssh.PublicKey, principals []string, validity time.Duration) (*SSHSigned, error) {
	if err := CheckUser(a.Site, user); err != nil {
		return nil, err
	}
	u, _ := a.Site.User(user)
	if len(principals) == 0 {
		principals = u.Principals
	}
	if validity == 0 {
		validity = a.Site.SSH.CertValidity.D()
	}
	return a.sign(KindSSHUser, user, pub, principals, validity)
}

// SignHost signs a node's host key with the host CA, for the host names
// the node is known by: its name, its mesh address, its endpoint's host and
// any extra names given.
func (a *Authority) SignHost(node string, pub ssh.PublicKey, extra []string, validity time.Duration) (*SSHSigned, error) {
	if err := CheckNode(a.Site, node); err != nil {
		return nil, err
	}
	n, _ := a.Site.Node(node)
	names := []string{n.Name}
	if addrs, err := a.MeshAddresses(); err == nil {
		names = append(names, addrs[n.Name].String())
	}
	if n.Endpoint != "" {
		if host, _, err := net.SplitHostPort(n.Endpoint); err == nil {
			names = append(names, host)
		}
	}
	for _, e := range extra {
		if !slices.Contains(names, e) {
			names = append(names, e)
		}
	}
	if validity == 0 {
		validity = a.Site.CA.CertValidity.D()
	}
	return a.sign(KindSSHHost, node, pub, names, validity)
}

func (a *Authority) sign(kind, name string, pub ssh.PublicKey, principals []string, validity time.Duration) (*SSHSigned, error) {
	for _, p := range principals {
		check := sshca.ValidPrincipal
		if kind == KindSSHHost {
			check = sshca.ValidHostname
		}
		if err := check(p); err != nil {
			return nil, badInput("principals: %v", err)
		}
	}
	if len(principals) == 0 {
		return nil, badInput("no principals: a certificate without principals is never signed")
	}
	caKind := KindSSHUserCA
	if kind == KindSSHHost {
		caKind = KindSSHHostCA
	}
	ca, _, err := a.sshIssuer(caKind)
	if err != nil {
		return nil, err
	}
	// Take the serial first: a serial must never be used twice, even if
	// the signing below fails.
	serial, err := a.Store.ReserveSSHSerial()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	req := sshca.Request{Key: pub, KeyID: fmt.Sprintf("%s@%s#%d", name, a.Site.Site, serial),
		Principals: principals, Validity: validity, Serial: serial}
	sign := sshca.SignUser
	if kind == KindSSHHost {
		sign = sshca.SignHost
	} else if u, ok := a.Site.User(name); ok {
		// Forwarding only where the site grants it to this user.
		req.Forwarding = u.Forwarding
	}
	cert, err := sign(ca, req, a.now())
	if err != nil {
		return nil, fmt.Errorf("authority: sign %s: %w", name, err)
	}
	line := sshca.CertLine(cert, req.KeyID)
	file := path.Join(sshCertDir, strconv.FormatUint(serial, 10)+"-cert.pub")
	rec := state.Record{Kind: kind, Name: name, Serial: strconv.FormatUint(serial, 10), Subject: req.KeyID,
		Principals: principals, NotBefore: time.Unix(int64(cert.ValidAfter), 0).UTC(),
		NotAfter: time.Unix(int64(cert.ValidBefore), 0).UTC(), File: file}
	// The audit record first: if the log cannot be written, the
	// certificate made above never leaves this function.
	if err := a.audit("sign", kind, name, rec.Serial, rec.NotAfter, fmt.Sprintf("principals %v, key %s", principals, ssh.FingerprintSHA256(pub))); err != nil {
		return nil, err
	}
	if err := a.write(file, []byte(line), publicMode); err != nil {
		return nil, err
	}
	if err := a.record(rec); err != nil {
		a.Store.Remove(file)
		return nil, err
	}
	return &SSHSigned{Record: rec, Cert: cert, Line: line}, nil
}

// RevokeSSH revokes SSH certificates by serial, or every unrevoked one of a
// user or host name when serial is 0, and publishes a new KRL.
func (a *Authority) RevokeSSH(name string, serial uint64) ([]state.Record, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	now := a.now()
	var done []state.Record
	for i := range ix.Records {
		r := &ix.Records[i]
		if (r.Kind != KindSSHUser && r.Kind != KindSSHHost) || r.RevokedAt != nil {
			continue
		}
		if (serial != 0 && r.Serial == strconv.FormatUint(serial, 10)) || (serial == 0 && r.Name == name) {
			r.RevokedAt = &now
			done = append(done, *r)
		}
	}
	if len(done) == 0 {
		if serial != 0 {
			return nil, badInput("no unrevoked SSH certificate with serial %d (see `ztwizard ca list`)", serial)
		}
		return nil, badInput("no unrevoked SSH certificate for %q (see `ztwizard ca list`)", name)
	}
	if err := a.auditRevoked(done); err != nil {
		return nil, err
	}
	if err := a.Store.SaveIndex(ix); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if _, err := a.KRL(); err != nil {
		return nil, err
	}
	return done, nil
}

// KRL writes the OpenSSH key revocation list of both SSH CAs to the store
// and returns it. sshd reads it through RevokedKeys.
func (a *Authority) KRL() ([]byte, error) {
	ix, err := a.Store.Index()
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	bySection := map[string][]uint64{}
	for _, r := range ix.Records {
		if r.RevokedAt == nil || (r.Kind != KindSSHUser && r.Kind != KindSSHHost) {
			continue
		}
		n, err := strconv.ParseUint(r.Serial, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("authority: index: bad SSH serial %q", r.Serial)
		}
		bySection[r.Kind] = append(bySection[r.Kind], n)
	}
	ix.KRLVersion++
	krl := &sshca.KRL{Version: ix.KRLVersion, Generated: a.now(), Comment: a.Site.Site + " ztwizard KRL"}
	for _, kind := range []string{KindSSHUser, KindSSHHost} {
		caKind := KindSSHUserCA
		if kind == KindSSHHost {
			caKind = KindSSHHostCA
		}
		// During a rotation both CAs get a section with every revoked
		// serial: serials are never used twice, so none is wrongly listed.
		pubs, _, err := a.trustedSSH(caKind)
		if err != nil {
			return nil, err
		}
		for _, pub := range pubs {
			krl.Certs = append(krl.Certs, sshca.CertRevocations{CA: pub, Serials: bySection[kind]})
		}
	}
	data := krl.Marshal()
	if err := a.audit("publish", KindKRL, a.Site.Site, fmt.Sprint(ix.KRLVersion), time.Time{},
		fmt.Sprintf("%d revoked", len(bySection[KindSSHUser])+len(bySection[KindSSHHost]))); err != nil {
		return nil, err
	}
	if err := a.Store.SaveIndex(ix); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	if err := a.write(KRLFile, data, publicMode); err != nil {
		return nil, err
	}
	return data, nil
}

// ParseAuthorizedKey reads one public key in authorized_keys format.
func ParseAuthorizedKey(data []byte) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, badInput("not an SSH public key: %v", err)
	}
	if _, isCert := pub.(*ssh.Certificate); isCert {
		return nil, badInput("that is a certificate, not a public key: give the KEY.pub it was made for")
	}
	return pub, nil
}

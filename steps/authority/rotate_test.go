package authority

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/bundle"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
)

// pemCerts parses every certificate of a PEM text.
func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// pemCount counts the PEM blocks of a type.
func pemCount(data []byte, typ string) int {
	n := 0
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if b.Type == typ {
			n++
		}
	}
	return n
}

// sshLines parses every key line of an SSH CA text.
func sshLines(t *testing.T, data []byte) []ssh.PublicKey {
	t.Helper()
	var out []ssh.PublicKey
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			t.Fatal(err)
		}
		out, rest = append(out, k), r
	}
	return out
}

// rotationState is what a rotation test checks after each phase.
type rotationState struct {
	trust    []*x509.Certificate // the X.509 CAs web's plan trusts
	crls     int
	userCAs  []ssh.PublicKey
	hostCAs  []ssh.PublicKey
	server   *x509.Certificate // web's api certificate
	hostCert *ssh.Certificate  // web's SSH host certificate
}

func rotationNow(t *testing.T, a *Authority) rotationState {
	t.Helper()
	sec, err := a.Secrets("web")
	if err != nil {
		t.Fatal(err)
	}
	var st rotationState
	st.trust = pemCerts(t, sec.CACert)
	st.crls = pemCount(sec.CRL, "X509 CRL")
	st.userCAs = sshLines(t, sec.SSHUserCA)
	st.hostCAs = sshLines(t, sec.SSHHostCA)
	st.server = pemCerts(t, sec.Servers["api"].Cert)[0]
	if len(sec.HostCert) > 0 {
		k, _, _, _, err := ssh.ParseAuthorizedKey(sec.HostCert)
		if err != nil {
			t.Fatal(err)
		}
		st.hostCert = k.(*ssh.Certificate)
	}
	return st
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// TestRotatePhases takes all three CAs through init, reissue and finish:
// what the plans trust and who issues at each phase, that a phase run again
// changes nothing, that the old CAs' keys are kept under retired/, and that
// each phase is in the audit log before anything it made.
func TestRotatePhases(t *testing.T) {
	a, _ := newAuthority(t, "")
	if _, err := a.RotateInit(RotatableCAs); err == nil || !errors.Is(err, ErrInput) {
		t.Fatalf("init with no CA yet: %v, want an input error", err)
	}
	if err := a.RecordHostKey("web", testSSHKey(t)); err != nil {
		t.Fatal(err)
	}
	before := rotationNow(t, a)
	oldCA := before.trust[0]
	oldKey := mustRead(t, a, CAKeyFile)
	oldUser := mustRead(t, a, SSHUserCAFile)
	if _, err := a.Issue("service-worker-01", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SignUser("alice", testSSHKey(t), nil, 0); err != nil {
		t.Fatal(err)
	}
	if len(before.trust) != 1 || before.crls != 1 || len(before.userCAs) != 1 || len(before.hostCAs) != 1 {
		t.Fatalf("before a rotation: %d CAs, %d CRLs, %d user CAs, %d host CAs; want one each", len(before.trust), before.crls, len(before.userCAs), len(before.hostCAs))
	}
	for _, phase := range []string{PhaseReissue, PhaseFinish} {
		var err error
		if phase == PhaseReissue {
			_, _, err = a.RotateReissue()
		} else {
			_, err = a.RotateFinish()
		}
		if !errors.Is(err, ErrInput) {
			t.Errorf("%s with no rotation: %v, want an input error", phase, err)
		}
	}

	// init: both trusted, the old issues.
	r, err := a.RotateInit(RotatableCAs)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != PhaseInit {
		t.Fatalf("phase %q after init", r.Phase)
	}
	in := rotationNow(t, a)
	if len(in.trust) != 2 || !in.trust[0].Equal(oldCA) || in.crls != 2 || len(in.userCAs) != 2 || len(in.hostCAs) != 2 {
		t.Fatalf("after init: %d CAs, %d CRLs, %d user CAs, %d host CAs; want the old and the new of each", len(in.trust), in.crls, len(in.userCAs), len(in.hostCAs))
	}
	newCA := in.trust[1]
	if !in.server.Equal(before.server) || !sameKey(in.hostCert.SignatureKey, before.hostCAs[0]) {
		t.Error("init re-issued leaves: the old CA issues until reissue")
	}
	if _, err := a.RotateFinish(); !errors.Is(err, ErrInput) {
		t.Errorf("finish straight after init: %v, want an input error (reissue first)", err)
	}
	if _, err := a.RotateInit([]string{KindCA}); !errors.Is(err, ErrInput) {
		t.Errorf("init of another set of CAs during a rotation: %v, want an input error", err)
	}
	if _, err := a.RotateInit(RotatableCAs); err != nil {
		t.Fatalf("init run again: %v", err)
	}
	if again := rotationNow(t, a); !again.trust[1].Equal(newCA) || !sameKey(again.userCAs[1], in.userCAs[1]) {
		t.Error("init run again made other new CAs")
	}

	// reissue: both trusted, the new issues, every leaf re-issued.
	r, issued, err := a.RotateReissue()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, rec := range issued {
		kinds[rec.Kind] = true
	}
	for _, k := range []string{KindServer, KindClient, KindSSHHost} {
		if !kinds[k] {
			t.Errorf("reissue issued no %s (issued %v)", k, issued)
		}
	}
	if !slices.Equal(r.Resign, []string{"alice"}) {
		t.Errorf("users to re-sign: %v, want [alice]", r.Resign)
	}
	re := rotationNow(t, a)
	if len(re.trust) != 2 || re.server.CheckSignatureFrom(newCA) != nil || !sameKey(re.hostCert.SignatureKey, in.hostCAs[1]) {
		t.Fatal("after reissue the server and host certificates must come from the new CAs, with both CAs trusted")
	}
	client, err := a.Current(KindClient, "service-worker-01")
	if err != nil || client.Cert.CheckSignatureFrom(newCA) != nil {
		t.Fatalf("the client certificate after reissue is not the new CA's: %v", err)
	}
	signed, err := a.SignUser("alice", testSSHKey(t), nil, 0)
	if err != nil || !sameKey(signed.Cert.SignatureKey, in.userCAs[1]) {
		t.Fatalf("a user certificate signed during reissue must be the new user CA's: %v", err)
	}
	if _, again, err := a.RotateReissue(); err != nil || len(again) != 0 {
		t.Errorf("reissue run again issued %d certificates (err %v), want none", len(again), err)
	}

	// finish: only the new trusted; the old kept, retired.
	if r, err = a.RotateFinish(); err != nil {
		t.Fatal(err)
	}
	if r.Phase != PhaseNone || !strings.Contains(r.Last, "finished") {
		t.Errorf("after finish: %+v", r)
	}
	fin := rotationNow(t, a)
	if len(fin.trust) != 1 || !fin.trust[0].Equal(newCA) || fin.crls != 1 || len(fin.userCAs) != 1 || !sameKey(fin.userCAs[0], in.userCAs[1]) ||
		len(fin.hostCAs) != 1 || !sameKey(fin.hostCAs[0], in.hostCAs[1]) {
		t.Fatal("after finish the plans must trust the new CAs alone")
	}
	if !fin.server.Equal(re.server) {
		t.Error("finish re-issued the server certificate")
	}
	ca, _, err := a.CA()
	if err != nil || !ca.Cert.Equal(newCA) {
		t.Fatalf("the site's CA after finish is not the new one: %v", err)
	}
	if got := mustRead(t, a, retiredFile(CAKeyFile, hexSerial(oldCA.SerialNumber))); !bytes.Equal(got, oldKey) {
		t.Error("the old CA key was not kept under retired/")
	}
	id, err := a.caIDOfKey(oldUser)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, a, retiredFile(SSHUserCAFile, id)); !bytes.Equal(got, oldUser) {
		t.Error("the old SSH user CA key was not kept under retired/")
	}
	for _, k := range RotatableCAs {
		for _, f := range caFiles(k) {
			if ok, err := a.exists(nextFile(f)); err != nil || ok {
				t.Errorf("%s still there after finish (err %v)", nextFile(f), err)
			}
		}
	}
	if mode(t, a.Store.Path(retiredFile(CAKeyFile, hexSerial(oldCA.SerialNumber)))) != 0o600 {
		t.Error("the retired CA key is not 0600")
	}
	ix, err := a.Store.Index()
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, rec := range ix.Find(KindCA, a.Site.Site) {
		files = append(files, rec.File)
	}
	if want := []string{retiredFile(CACertFile, hexSerial(oldCA.SerialNumber)), CACertFile}; !slices.Equal(files, want) {
		t.Errorf("CA records point at %v, want %v", files, want)
	}
	if recs := ix.Find(KindCA, a.Site.Site); recs[0].SupersededAt == nil || recs[1].SupersededAt != nil {
		t.Error("the retired CA's record must be marked superseded, the new one's not")
	}
	for _, dir := range []string{"ca/next", "ssh/next"} {
		if ok, _ := a.exists(dir); ok {
			t.Errorf("%s left after finish", dir)
		}
	}
	if _, err := a.RotateFinish(); !errors.Is(err, ErrInput) {
		t.Errorf("finish with no rotation: %v, want an input error", err)
	}

	// The audit log: each phase before what it made.
	events, err := a.Store.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ev := range events {
		switch {
		case strings.HasPrefix(ev.Action, "rotate-"):
			order = append(order, ev.Action)
		case ev.Action == "create" && strings.Contains(ev.Detail, "rotated in") && !slices.Contains(order, "create"):
			order = append(order, "create")
		case ev.Action == "issue" && slices.Contains(order, "rotate-reissue") && !slices.Contains(order, "issue"):
			order = append(order, "issue")
		}
	}
	if want := []string{"rotate-init", "create", "rotate-init", "rotate-reissue", "issue", "rotate-reissue", "rotate-finish"}; !slices.Equal(order, want) {
		t.Errorf("audit order %v, want %v", order, want)
	}
}

// caIDOfKey is caID for an SSH CA private key's text.
func (a *Authority) caIDOfKey(keyPEM []byte) (string, error) {
	key, err := sshca.DecodePrivateKey(keyPEM, a.Passphrase)
	if err != nil {
		return "", err
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return "", err
	}
	return sshCAID(pub), nil
}

// TestRotateInitEncrypts: with a passphrase the new CAs' keys are stored
// encrypted, as the old ones are.
func TestRotateInitEncrypts(t *testing.T) {
	a, _ := newAuthority(t, "pass")
	if _, _, err := a.CA(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SSHCA(KindSSHUserCA); err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"", "wrong"} {
		a.Passphrase = []byte(pass)
		if _, err := a.RotateInit([]string{KindCA, KindSSHUserCA}); !errors.Is(err, ErrInput) {
			t.Errorf("init with passphrase %q: %v, want an input error", pass, err)
		}
		if ok, _ := a.exists(nextFile(CAKeyFile)); ok {
			t.Fatalf("init with passphrase %q made a new CA key", pass)
		}
	}
	a.Passphrase = []byte("pass")
	if _, err := a.RotateInit([]string{KindCA, KindSSHUserCA}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{nextFile(CAKeyFile), nextFile(SSHUserCAFile)} {
		if data := mustRead(t, a, f); !isEncrypted(data) {
			t.Errorf("%s is stored in clear", f)
		}
		if m := mode(t, a.Store.Path(f)); m != 0o600 {
			t.Errorf("%s is mode %o", f, m)
		}
	}
	rot := mustRead(t, a, RotationFile)
	a.Passphrase = nil
	if _, _, err := a.RotateReissue(); !errors.Is(err, ErrInput) {
		t.Errorf("reissue without the passphrase: %v, want an input error", err)
	}
	if _, err := a.RotateRollback(); !errors.Is(err, ErrInput) {
		t.Errorf("rollback without the passphrase: %v, want an input error", err)
	}
	if !bytes.Equal(mustRead(t, a, RotationFile), rot) {
		t.Error("a reissue or rollback without the passphrase changed the rotation")
	}
}

// TestRotateRollback rolls back from reissue: the old CAs alone are
// trusted, every leaf the new ones issued is issued again by the old, and
// the new CAs' keys are kept under retired/.
func TestRotateRollback(t *testing.T) {
	a, _ := newAuthority(t, "")
	if err := a.RecordHostKey("web", testSSHKey(t)); err != nil {
		t.Fatal(err)
	}
	before := rotationNow(t, a)
	if _, err := a.RotateRollback(); !errors.Is(err, ErrInput) {
		t.Errorf("rollback with no rotation: %v, want an input error", err)
	}
	if _, err := a.RotateInit(RotatableCAs); err != nil {
		t.Fatal(err)
	}
	newKey := mustRead(t, a, nextFile(CAKeyFile))
	newCA := pemCerts(t, mustRead(t, a, nextFile(CACertFile)))[0]
	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	if mid := rotationNow(t, a); mid.server.CheckSignatureFrom(newCA) != nil {
		t.Fatal("reissue did not issue under the new CA")
	}
	r, err := a.RotateRollback()
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != PhaseNone || !strings.Contains(r.Last, "rolled back") {
		t.Errorf("after rollback: %+v", r)
	}
	after := rotationNow(t, a)
	if len(after.trust) != 1 || !after.trust[0].Equal(before.trust[0]) || after.crls != 1 || len(after.userCAs) != 1 ||
		!sameKey(after.userCAs[0], before.userCAs[0]) || len(after.hostCAs) != 1 || !sameKey(after.hostCAs[0], before.hostCAs[0]) {
		t.Fatal("after rollback the plans must trust the old CAs alone")
	}
	if after.server.CheckSignatureFrom(before.trust[0]) != nil || !sameKey(after.hostCert.SignatureKey, before.hostCAs[0]) {
		t.Error("after rollback the leaves must come from the old CAs again")
	}
	if got := mustRead(t, a, retiredFile(CAKeyFile, hexSerial(newCA.SerialNumber))); !bytes.Equal(got, newKey) {
		t.Error("the new CA key was not kept under retired/")
	}
	// A new rotation can begin.
	if _, err := a.RotateInit([]string{KindSSHUserCA}); err != nil {
		t.Fatalf("init after a rollback: %v", err)
	}
	if got := rotationNow(t, a); len(got.trust) != 1 || len(got.userCAs) != 2 || len(got.hostCAs) != 1 {
		t.Error("a rotation of the SSH user CA alone must add only a user CA")
	}
}

// TestRotateFinishCutShort cuts a finish short after the new CA key took
// the old one's place and before its certificate did: plans are refused
// until finish runs again, and that completes it with nothing lost.
func TestRotateFinishCutShort(t *testing.T) {
	a, _ := newAuthority(t, "")
	before := rotationNow(t, a)
	oldKey := mustRead(t, a, CAKeyFile)
	if _, err := a.RotateInit(RotatableCAs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	newCA := pemCerts(t, mustRead(t, a, nextFile(CACertFile)))[0]
	cutAfter = CAKeyFile
	_, err := a.RotateFinish()
	cutAfter = ""
	if !errors.Is(err, errCut) {
		t.Fatalf("finish with a cut: %v", err)
	}
	if _, err := a.Secrets("web"); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--phase finish") {
		t.Errorf("a plan after a cut-short finish: %v, want to be told to run finish again", err)
	}
	if r, err := a.Rotation(); err != nil || r.Phase != phaseFinishing {
		t.Fatalf("phase after the cut: %v %v", r, err)
	}
	if _, err := a.RotateRollback(); !errors.Is(err, ErrInput) {
		t.Errorf("rollback after finish began: %v, want an input error", err)
	}
	if _, err := a.RotateFinish(); err != nil {
		t.Fatalf("finish run again: %v", err)
	}
	ca, _, err := a.CA()
	if err != nil || !ca.Cert.Equal(newCA) {
		t.Fatalf("CA after the completed finish: %v", err)
	}
	if got := mustRead(t, a, retiredFile(CAKeyFile, hexSerial(before.trust[0].SerialNumber))); !bytes.Equal(got, oldKey) {
		t.Error("the old CA key was lost")
	}
	if after := rotationNow(t, a); len(after.trust) != 1 || !after.trust[0].Equal(newCA) {
		t.Error("after the completed finish the new CA alone must be trusted")
	}
}

// TestRotateAuditFirst: with the audit log unwritable no phase changes
// anything in the store.
func TestRotateAuditFirst(t *testing.T) {
	a, _ := newAuthority(t, "")
	rotationNow(t, a)
	log := a.Store.Path("audit.log")
	breakLog := func() {
		t.Helper()
		if err := os.Rename(log, log+".real"); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(log, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mendLog := func() {
		t.Helper()
		if err := os.Remove(log); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(log+".real", log); err != nil {
			t.Fatal(err)
		}
	}
	breakLog()
	if _, err := a.RotateInit(RotatableCAs); err == nil || !strings.Contains(err.Error(), "audit") {
		t.Fatalf("init with the audit log unwritable: %v", err)
	}
	for _, f := range []string{RotationFile, nextFile(CAKeyFile), nextFile(SSHUserCAFile)} {
		if ok, _ := a.exists(f); ok {
			t.Errorf("%s made with the audit log unwritable", f)
		}
	}
	mendLog()
	if _, err := a.RotateInit(RotatableCAs); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []struct {
		name string
		run  func() error
	}{
		{"reissue", func() error { _, _, err := a.RotateReissue(); return err }},
		{"rollback", func() error { _, err := a.RotateRollback(); return err }},
	} {
		rot, ix := mustRead(t, a, RotationFile), mustRead(t, a, "index.json")
		breakLog()
		if err := phase.run(); err == nil || !strings.Contains(err.Error(), "audit") {
			t.Errorf("%s with the audit log unwritable: %v", phase.name, err)
		}
		mendLog()
		if !bytes.Equal(mustRead(t, a, RotationFile), rot) || !bytes.Equal(mustRead(t, a, "index.json"), ix) {
			t.Errorf("%s with the audit log unwritable changed the rotation or the index", phase.name)
		}
	}
	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	rot := mustRead(t, a, RotationFile)
	breakLog()
	if _, err := a.RotateFinish(); err == nil || !strings.Contains(err.Error(), "audit") {
		t.Errorf("finish with the audit log unwritable: %v", err)
	}
	mendLog()
	if !bytes.Equal(mustRead(t, a, RotationFile), rot) {
		t.Error("finish with the audit log unwritable changed the rotation")
	}
	if ok, _ := a.exists(nextFile(CACertFile)); !ok {
		t.Error("finish with the audit log unwritable moved the new CA")
	}
}

// TestRotateRollbackCutShort cuts a rollback short after the new CA's key
// was copied to retired/: the rotation still trusts both CAs, and rollback
// run again completes it with the key kept.
func TestRotateRollbackCutShort(t *testing.T) {
	a, _ := newAuthority(t, "")
	before := rotationNow(t, a)
	if _, err := a.RotateInit(RotatableCAs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	newKey := mustRead(t, a, nextFile(CAKeyFile))
	newCA := pemCerts(t, mustRead(t, a, nextFile(CACertFile)))[0]
	retired := retiredFile(CAKeyFile, hexSerial(newCA.SerialNumber))
	cutAfter = retired
	_, err := a.RotateRollback()
	cutAfter = ""
	if !errors.Is(err, errCut) {
		t.Fatalf("rollback with a cut: %v", err)
	}
	if mid := rotationNow(t, a); len(mid.trust) != 2 || mid.server.CheckSignatureFrom(before.trust[0]) != nil {
		t.Error("half a rollback must trust both CAs, its leaves already the old CA's")
	}
	if _, _, err := a.RotateReissue(); !errors.Is(err, ErrInput) {
		t.Errorf("reissue during a cut-short rollback: %v, want an input error", err)
	}
	if _, err := a.RotateRollback(); err != nil {
		t.Fatalf("rollback run again: %v", err)
	}
	after := rotationNow(t, a)
	if len(after.trust) != 1 || !after.trust[0].Equal(before.trust[0]) || after.server.CheckSignatureFrom(before.trust[0]) != nil {
		t.Error("after the completed rollback the old CA alone must be trusted and issue")
	}
	if got := mustRead(t, a, retired); !bytes.Equal(got, newKey) {
		t.Error("the new CA key was not kept under retired/")
	}
}

// TestBundleTrustHandOver: a bundle signed by the new CA is refused by a
// node that has not applied a bundle announcing it, and accepted by one
// that has; after that the retired CA's bundles are refused.
func TestBundleTrustHandOver(t *testing.T) {
	a, c := newAuthority(t, "")
	nodeStore := func() *state.Store {
		s, err := state.Open(t.TempDir() + "/node")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	apply := func(s *state.Store, data []byte, fp string) error {
		h, err := bundle.LoadHeld(s)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := bundle.TrustFor(h, fp)
		if err != nil {
			return err
		}
		p, err := bundle.Open(data, tr, c.now)
		if err != nil {
			return err
		}
		return bundle.SaveHeld(s, p, c.now)
	}
	first, _, err := a.Bundle("web")
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	early, late := nodeStore(), nodeStore()
	for _, s := range []*state.Store{early, late} {
		if err := apply(s, first, bundle.Fingerprint(ca.Cert)); err != nil {
			t.Fatal(err)
		}
	}
	oldCA := ca

	if _, err := a.RotateInit([]string{KindCA}); err != nil {
		t.Fatal(err)
	}
	overlap, p, err := a.Bundle("web")
	if err != nil {
		t.Fatal(err)
	}
	if len(pemCerts(t, []byte(p.Secrets.CACerts))) != 2 {
		t.Fatal("the overlap bundle does not announce both CAs")
	}
	if got, _ := p.CA(); !got.Equal(oldCA.Cert) {
		t.Fatal("the overlap bundle must be signed by the old CA")
	}
	next, err := a.loadCAAt(nextFile(CACertFile), nextFile(CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	// A bundle signed by the new CA before the node learned it.
	pNew := *p
	pNew.Serial++
	byNew, err := bundle.Sign(&pNew, next)
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(early, byNew, ""); !errors.Is(err, bundle.ErrRefused) {
		t.Fatalf("a bundle of the new CA before the node learned it: %v, want refused", err)
	}
	if err := apply(early, overlap, ""); err != nil {
		t.Fatalf("the overlap bundle: %v", err)
	}
	if err := apply(early, byNew, ""); err != nil {
		t.Fatalf("a bundle of the new CA after the overlap bundle: %v", err)
	}

	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RotateFinish(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ReserveBundleSerials("web"); err != nil { // the one byNew took
		t.Fatal(err)
	}
	final, fp, err := a.Bundle("web")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := fp.CA(); !got.Equal(next.Cert) || fp.Secrets.CACerts != "" {
		t.Fatal("after finish the bundle must be signed by the new CA and announce no other")
	}
	if err := apply(late, final, ""); !errors.Is(err, bundle.ErrRefused) {
		t.Errorf("a node that missed the overlap accepted the new CA's bundle: %v", err)
	}
	if err := apply(early, final, ""); err != nil {
		t.Fatalf("a node that applied the overlap bundle refused the new CA's: %v", err)
	}
	// Now the node trusts the new CA alone.
	pOld := *fp
	pOld.Serial++
	byOld, err := bundle.Sign(&pOld, oldCA)
	if err != nil {
		t.Fatal(err)
	}
	if err := apply(early, byOld, ""); !errors.Is(err, bundle.ErrRefused) {
		t.Errorf("a bundle of the retired CA after finish: %v, want refused", err)
	}
}

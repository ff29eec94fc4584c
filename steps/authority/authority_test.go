package authority

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
)

var t0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newAuthority(t *testing.T, pass string) (*Authority, *clock) {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: t0}
	return &Authority{Store: store, Site: steps.Example(), Passphrase: []byte(pass), Now: c.Now}, c
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is required (make test installs it): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestCACreatedOnceWithModes(t *testing.T) {
	a, _ := newAuthority(t, "")
	ca, created, err := a.CA()
	if err != nil || !created {
		t.Fatalf("CA: created=%v err=%v", created, err)
	}
	again, created, err := a.CA()
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("second CA call must load the same CA: created=%v err=%v", created, err)
	}
	for rel, want := range map[string]os.FileMode{
		".": 0o700, "ca": 0o700, CAKeyFile: 0o600, CACertFile: 0o644, CRLFile: 0o644, "index.json": 0o600, "audit.log": 0o600,
	} {
		if got := mode(t, a.Store.Path(rel)); got != want {
			t.Errorf("%s: mode %o, want %o", rel, got, want)
		}
	}
	if ca.Cert.Subject.CommonName != "Internal Root CA" || ca.Cert.Subject.Organization[0] != "MyOrg" {
		t.Errorf("subject %s", ca.Cert.Subject)
	}
	if got := ca.Cert.NotAfter.Sub(t0); got != 87600*time.Hour {
		t.Errorf("CA validity %v, want 87600h", got)
	}
	log, err := a.Store.AuditLog()
	if err != nil || len(log) < 2 || log[0].Action != "create" || log[0].Kind != KindCA {
		t.Fatalf("audit log: %+v %v", log, err)
	}
}

func TestIssueRevokeCRLWithOpenSSL(t *testing.T) {
	a, c := newAuthority(t, "")
	client, err := a.Issue("service-worker-01", "")
	if err != nil {
		t.Fatal(err)
	}
	server, err := a.Issue("api", "rsa-3072")
	if err != nil {
		t.Fatal(err)
	}
	if client.Cert.Subject.CommonName != "service-worker-01" || client.Cert.Subject.Organization[0] != "MyOrg" {
		t.Errorf("client subject %s", client.Cert.Subject)
	}
	if len(server.Cert.DNSNames) != 1 || server.Cert.DNSNames[0] != "api.internal.example.com" {
		t.Errorf("server SANs %v", server.Cert.DNSNames)
	}
	if mode(t, a.Store.Path(client.KeyFile)) != 0o600 {
		t.Errorf("leaf key is not 0600")
	}
	at := fmt.Sprint(c.now.Add(time.Minute).Unix())
	caFile := a.Store.Path(CACertFile)
	for _, leaf := range []*Issued{client, server} {
		mustRun(t, "openssl", "verify", "-attime", at, "-CAfile", caFile, a.Store.Path(leaf.CertFile))
	}

	c.now = c.now.Add(time.Hour)
	done, err := a.Revoke("service-worker-01", "")
	if err != nil || len(done) != 1 {
		t.Fatalf("revoke: %v %v", done, err)
	}
	crl := a.Store.Path(CRLFile)
	if out := mustRun(t, "openssl", "crl", "-in", crl, "-CAfile", caFile, "-noout", "-verify"); !strings.Contains(out, "verify OK") {
		t.Fatalf("CRL verify: %s", out)
	}
	text := mustRun(t, "openssl", "crl", "-in", crl, "-noout", "-text")
	if !strings.Contains(strings.ToUpper(text), strings.ToUpper(client.Record.Serial)) {
		t.Fatalf("CRL does not list serial %s:\n%s", client.Record.Serial, text)
	}
	at = fmt.Sprint(c.now.Add(time.Minute).Unix())
	if out, err := run(t, "openssl", "verify", "-attime", at, "-crl_check", "-CRLfile", crl, "-CAfile", caFile, a.Store.Path(client.CertFile)); err == nil {
		t.Fatalf("openssl accepted a revoked certificate:\n%s", out)
	}
	mustRun(t, "openssl", "verify", "-attime", at, "-crl_check", "-CRLfile", crl, "-CAfile", caFile, a.Store.Path(server.CertFile))

	cur, err := a.Current(KindClient, "service-worker-01")
	if err != nil || cur != nil {
		t.Fatalf("a revoked certificate is not current: %v %v", cur, err)
	}
	cur, err = a.Current(KindServer, "api")
	if err != nil || cur == nil || cur.Record.Serial != server.Record.Serial {
		t.Fatalf("current server certificate: %v %v", cur, err)
	}
	if _, err := a.Revoke("service-worker-01", ""); !errors.Is(err, ErrInput) {
		t.Fatalf("revoking twice: %v, want ErrInput", err)
	}
	// openssl prints serials in upper case with colons; accept that form.
	colons := strings.ToUpper(server.Record.Serial)
	if _, err := a.Revoke("", colons[:2]+":"+colons[2:]); err != nil {
		t.Fatalf("revoke by openssl-style serial: %v", err)
	}
}

func TestUnknownNamesAreInputErrors(t *testing.T) {
	a, _ := newAuthority(t, "")
	pub := testSSHKey(t)
	for name, err := range map[string]error{
		"issue": func() error { _, err := a.Issue("service-worker-1", ""); return err }(),
		"key":   func() error { _, err := a.Issue("api", "dsa"); return err }(),
		"user":  func() error { _, err := a.SignUser("bob", pub, nil, 0); return err }(),
		"host":  func() error { _, err := a.SignHost("dbb", pub, nil, 0); return err }(),
		"badp":  func() error { _, err := a.SignUser("alice", pub, []string{"root,evil"}, 0); return err }(),
	} {
		if !errors.Is(err, ErrInput) {
			t.Errorf("%s: %v, want ErrInput", name, err)
		}
	}
	if _, err := a.Issue("service-worker-1", ""); !strings.Contains(err.Error(), `did you mean "service-worker-01"`) {
		t.Errorf("no suggestion: %v", err)
	}
	if ok, _ := a.Store.Exists(CACertFile); ok {
		t.Errorf("a refused request created the CA")
	}
}

func testSSHKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	k, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestSSHSignRevokeWithSSHKeygen(t *testing.T) {
	a, c := newAuthority(t, "")
	c.now = time.Now().UTC().Truncate(time.Second) // ssh-keygen -Q has no clock override
	dir := t.TempDir()
	user, err := a.SignUser("alice", testSSHKey(t), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.SignUser("alice", testSSHKey(t), []string{"devops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	host, err := a.SignHost("db", testSSHKey(t), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if user.Cert.Serial == other.Cert.Serial || other.Cert.Serial == host.Cert.Serial {
		t.Fatalf("serials repeat: %d %d %d", user.Cert.Serial, other.Cert.Serial, host.Cert.Serial)
	}
	files := map[string]string{}
	for name, s := range map[string]*SSHSigned{"user": user, "other": other, "host": host} {
		files[name] = filepath.Join(dir, name+"-cert.pub")
		if err := os.WriteFile(files[name], []byte(s.Line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, "ssh-keygen", "-L", "-f", files["user"])
	from := c.now.Add(-sshca.Backdate).Format("2006-01-02T15:04:05")
	to := c.now.Add(4 * time.Hour).Format("2006-01-02T15:04:05")
	for _, want := range []string{"user certificate", `Key ID: "alice@oslo-prod#1"`, "Serial: 1", "root", "devops", "Valid: from " + from + " to " + to} {
		if !strings.Contains(out, want) {
			t.Errorf("ssh-keygen -L lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, "ssh-keygen", "-L", "-f", files["host"])
	for _, want := range []string{"host certificate", "db", "10.100.0.1", "192.168.1.100"} {
		if !strings.Contains(out, want) {
			t.Errorf("host cert lacks %q:\n%s", want, out)
		}
	}
	if _, err := a.RevokeSSH("", user.Cert.Serial); err != nil {
		t.Fatal(err)
	}
	krl := a.Store.Path(KRLFile)
	if out, err := run(t, "ssh-keygen", "-Q", "-f", krl, files["user"]); err == nil || !strings.Contains(out, "REVOKED") {
		t.Fatalf("revoked certificate not reported: %v\n%s", err, out)
	}
	for _, name := range []string{"other", "host"} {
		if out, err := run(t, "ssh-keygen", "-Q", "-f", krl, files[name]); err != nil {
			t.Fatalf("%s certificate reported revoked: %v\n%s", name, err, out)
		}
	}
	if _, err := a.RevokeSSH("db", 0); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "ssh-keygen", "-Q", "-f", krl, files["host"]); err == nil {
		t.Fatalf("revoked host certificate not reported:\n%s", out)
	}
}

func TestEncryptedKeysAtRest(t *testing.T) {
	a, _ := newAuthority(t, "correct horse")
	ca, _, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SSHCA(KindSSHUserCA); err != nil {
		t.Fatal(err)
	}
	keyFile := a.Store.Path(CAKeyFile)
	data, _ := os.ReadFile(keyFile)
	if !bytes.Contains(data, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("CA key not encrypted:\n%s", data)
	}
	plain, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if bytes.Contains(block.Bytes, plain) || bytes.Contains(data, plain) {
		t.Fatal("the encrypted file holds the plain key")
	}
	passFile := filepath.Join(t.TempDir(), "pass")
	os.WriteFile(passFile, []byte("correct horse\n"), 0o600)
	mustRun(t, "openssl", "pkey", "-in", keyFile, "-passin", "file:"+passFile, "-noout")
	if _, err := run(t, "openssl", "pkey", "-in", keyFile, "-passin", "pass:wrong", "-noout"); err == nil {
		t.Fatal("openssl opened the CA key with a wrong passphrase")
	}
	sshFile := a.Store.Path(SSHUserCAFile)
	mustRun(t, "ssh-keygen", "-y", "-P", "correct horse", "-f", sshFile)
	if _, err := run(t, "ssh-keygen", "-y", "-P", "", "-f", sshFile); err == nil {
		t.Fatal("ssh-keygen opened the SSH CA key without the passphrase")
	}

	for _, tc := range []struct {
		pass, want string
	}{
		{"", "is encrypted: give its passphrase with --passphrase-file"},
		{"wrong", "wrong passphrase"},
	} {
		b := &Authority{Store: a.Store, Site: a.Site, Passphrase: []byte(tc.pass), Now: a.Now}
		_, _, err := b.CA()
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CA with passphrase %q: %v, want %q", tc.pass, err, tc.want)
		}
		_, _, err = b.SSHCA(KindSSHUserCA)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SSH CA with passphrase %q: %v, want %q", tc.pass, err, tc.want)
		}
	}
}

func TestPassphraseEncryptsPlainStore(t *testing.T) {
	a, _ := newAuthority(t, "")
	if _, _, err := a.CA(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SSHCA(KindSSHHostCA); err != nil {
		t.Fatal(err)
	}
	a.Passphrase = []byte("now secret")
	if _, _, err := a.CA(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.SSHCA(KindSSHHostCA); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{CAKeyFile, SSHHostCAFile} {
		data, _ := a.Store.ReadFile(rel)
		if !isEncrypted(data) {
			t.Errorf("%s still plain after a passphrase was given", rel)
		}
	}
	if _, err := pki.DecodeKeyPEM(mustRead(t, a, CAKeyFile), nil); !errors.Is(err, pki.ErrPassphraseRequired) {
		t.Errorf("CA key opens without passphrase: %v", err)
	}
}

func mustRead(t *testing.T, a *Authority, rel string) []byte {
	t.Helper()
	data, err := a.Store.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestStatusWarnings(t *testing.T) {
	a, c := newAuthority(t, "")
	if _, err := a.Issue("service-worker-01", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SignUser("alice", testSSHKey(t), nil, 0); err != nil {
		t.Fatal(err)
	}
	warned := func() map[string]string {
		list, err := a.Status()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range list {
			if e.Warn {
				out[e.Kind] = e.State
			}
		}
		return out
	}
	if w := warned(); len(w) != 0 {
		t.Fatalf("fresh store warns: %v", w)
	}
	c.now = t0.Add(168*time.Hour - 12*time.Hour) // CRL within a day
	if w := warned(); w[KindCRL] != "expiring" || len(w) != 1 {
		t.Fatalf("want only the CRL flagged, got %v", w)
	}
	if due, _ := a.CRLDue(); !due {
		t.Fatal("CRL not due 12h before nextUpdate")
	}
	if _, err := a.CRL(); err != nil {
		t.Fatal(err)
	}
	if due, _ := a.CRLDue(); due {
		t.Fatal("CRL due right after signing")
	}
	c.now = t0.Add(2160*time.Hour - 20*24*time.Hour) // leaf within 30 days; CRL lapsed
	w := warned()
	if w[KindClient] != "expiring" || w[KindCRL] != "expired" || w[KindSSHUser] != "" {
		t.Fatalf("want client expiring and CRL expired, got %v", w)
	}
}

func TestSerialsSurviveReopen(t *testing.T) {
	a, _ := newAuthority(t, "")
	first, err := a.SignUser("alice", testSSHKey(t), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(a.Store.Dir())
	if err != nil {
		t.Fatal(err)
	}
	b := &Authority{Store: store, Site: a.Site, Now: a.Now}
	second, err := b.SignUser("alice", testSSHKey(t), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.Cert.Serial != first.Cert.Serial+1 {
		t.Fatalf("serial after reopen %d, want %d", second.Cert.Serial, first.Cert.Serial+1)
	}
}

// TestRevokeNameAuditsEach: revoking by name every certificate of that
// name, X.509 and SSH, leaves one revoke event per certificate, with its
// serial, after the log's earlier events.
func TestRevokeNameAuditsEach(t *testing.T) {
	a, _ := newAuthority(t, "")
	var want []string
	for range 3 {
		is, err := a.Issue("service-worker-01", "")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, KindClient+" "+is.Record.Serial)
	}
	for range 2 {
		s, err := a.SignUser("alice", testSSHKey(t), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, KindSSHUser+" "+s.Record.Serial)
	}
	before, err := a.Store.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	if done, err := a.Revoke("service-worker-01", ""); err != nil || len(done) != 3 {
		t.Fatalf("revoke: %d, %v", len(done), err)
	}
	if done, err := a.RevokeSSH("alice", 0); err != nil || len(done) != 2 {
		t.Fatalf("revoke ssh: %d, %v", len(done), err)
	}
	log, err := a.Store.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range log[len(before):] {
		if ev.Action == "revoke" {
			got = append(got, ev.Kind+" "+ev.Serial)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("revoke events %v, want %v", got, want)
	}
}

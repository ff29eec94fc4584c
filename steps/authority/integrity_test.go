package authority

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/state"
	"ztwizard/steps/testenv"
)

// populated is a store with both kinds of CA at work: a client and a
// server certificate, an SSH user certificate, one X.509 revocation.
func populated(t *testing.T) *Authority {
	t.Helper()
	a, _ := newAuthority(t, "")
	if _, err := a.Secrets("web"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Issue("service-worker-01", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Revoke("service-worker-01", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SignUser("alice", testSSHKey(t), nil, 0); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestNoCAOverExistingKeyMaterial removes a CA's certificate (or an SSH
// CA's key or .pub) from a store that used it: every use of the CA is then
// an error naming what is missing and what is left, and the store is not
// changed (no new CA, no new key, no record).
func TestNoCAOverExistingKeyMaterial(t *testing.T) {
	tests := []struct {
		name   string
		remove []string
		use    func(a *Authority) error
		want   string
	}{
		{"x509 certificate gone", []string{CACertFile}, func(a *Authority) error { _, _, err := a.CA(); return err },
			"the X.509 CA certificate ca/ca.pem is missing from the state store"},
		{"x509 certificate gone, issue", []string{CACertFile}, func(a *Authority) error { _, err := a.Issue("api", ""); return err },
			"which still holds ca/ca-key.pem, ca/crl.pem, x509, 3 record(s) in index.json"},
		{"x509 certificate, key, CRL and leaves gone", []string{CACertFile, CAKeyFile, CRLFile, "x509"},
			func(a *Authority) error { _, err := a.Secrets("web"); return err }, "3 record(s) in index.json"},
		{"x509 everything gone but the records", []string{CACertFile, CAKeyFile, CRLFile, "x509"},
			func(a *Authority) error { _, err := a.CRL(); return err }, "record(s) in index.json, 6 record(s) in audit.log"},
		{"ssh user CA key gone", []string{SSHUserCAFile}, func(a *Authority) error { _, _, err := a.SSHCA(KindSSHUserCA); return err },
			"the ssh-user-ca key ssh/user_ca is missing from the state store"},
		{"ssh host CA key and .pub gone", []string{SSHHostCAFile, SSHHostCAFile + ".pub"},
			func(a *Authority) error { _, err := a.Secrets("db"); return err }, "ssh/revoked.krl"},
		{"ssh user CA .pub gone", []string{SSHUserCAFile + ".pub"}, func(a *Authority) error { _, err := a.SignUser("alice", testSSHKey(t), nil, 0); return err },
			"ssh/user_ca.pub is missing from the state store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := populated(t)
			for _, rel := range tt.remove {
				if err := os.RemoveAll(a.Store.Path(rel)); err != nil {
					t.Fatal(err)
				}
			}
			before := testenv.TreeDump(t, a.Store.Dir())
			err := tt.use(a)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if got := testenv.TreeDump(t, a.Store.Dir()); got != before {
				t.Errorf("the store changed:\n%s", testenv.DiffLines(before, got))
			}
		})
	}

	// Where one CA never existed, it is still made beside the others.
	a, _ := newAuthority(t, "")
	if _, _, err := a.SSHCA(KindSSHUserCA); err != nil {
		t.Fatal(err)
	}
	if _, created, err := a.CA(); err != nil || !created {
		t.Fatalf("X.509 CA beside an SSH CA: created %v, %v", created, err)
	}
}

// TestCAKeyMustMatchCert swaps another store's CA keys in: nothing is
// signed with them, not a CRL, not a certificate.
func TestCAKeyMustMatchCert(t *testing.T) {
	for _, tt := range []struct {
		file string
		use  func(a *Authority) error
		want string
	}{
		{CAKeyFile, func(a *Authority) error { _, err := a.CRL(); return err }, "the CA key " + "%s/ca/ca-key.pem does not match the CA certificate"},
		{CAKeyFile, func(a *Authority) error { _, err := a.Issue("api", ""); return err }, "does not match the CA certificate"},
		{SSHUserCAFile, func(a *Authority) error { _, err := a.SignUser("alice", testSSHKey(t), nil, 0); return err }, "the SSH CA key %s/ssh/user_ca does not match"},
		{SSHHostCAFile, func(a *Authority) error { _, err := a.KRL(); return err }, "ssh/host_ca does not match"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			a, other := populated(t), populated(t)
			key, err := os.ReadFile(other.Store.Path(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(a.Store.Path(tt.file), key, 0o600); err != nil {
				t.Fatal(err)
			}
			before := testenv.TreeDump(t, a.Store.Dir())
			err = tt.use(a)
			want := strings.ReplaceAll(tt.want, "%s", a.Store.Dir())
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want %q", err, want)
			}
			if got := testenv.TreeDump(t, a.Store.Dir()); got != before {
				t.Errorf("the store changed:\n%s", testenv.DiffLines(before, got))
			}
		})
	}
}

// TestAuditFirst makes audit.log unwritable (a folder in its place): then
// nothing is issued, signed or revoked, and no file or index entry is left
// of the attempt.
func TestAuditFirst(t *testing.T) {
	a := populated(t)
	ix0, err := a.Store.Index()
	if err != nil {
		t.Fatal(err)
	}
	log := a.Store.Path("audit.log")
	if err := os.Rename(log, log+".real"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(log, 0o700); err != nil {
		t.Fatal(err)
	}
	crl := mustRead(t, a, CRLFile)
	for name, use := range map[string]func() error{
		"issue":      func() error { _, err := a.Issue("api", ""); return err },
		"revoke":     func() error { _, err := a.Revoke("api", ""); return err },
		"crl":        func() error { _, err := a.CRL(); return err },
		"sign":       func() error { _, err := a.SignUser("alice", testSSHKey(t), nil, 0); return err },
		"revoke ssh": func() error { _, err := a.RevokeSSH("alice", 0); return err },
		"wireguard":  func() error { _, err := a.WireGuardKey("newnode"); return err },
	} {
		if err := use(); err == nil || (name != "wireguard" && !strings.Contains(err.Error(), "audit")) {
			t.Errorf("%s with audit.log unwritable: err = %v, want an audit error", name, err)
		}
	}
	ix, err := a.Store.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Records) != len(ix0.Records) || ix.CRLNumber != ix0.CRLNumber || ix.KRLVersion != ix0.KRLVersion {
		t.Errorf("index changed: %d records (was %d), CRL %d (was %d), KRL %d (was %d)",
			len(ix.Records), len(ix0.Records), ix.CRLNumber, ix0.CRLNumber, ix.KRLVersion, ix0.KRLVersion)
	}
	for i, r := range ix.Records {
		if (r.RevokedAt == nil) != (ix0.Records[i].RevokedAt == nil) {
			t.Errorf("%s %s: revocation changed", r.Kind, r.Name)
		}
	}
	if got := mustRead(t, a, CRLFile); string(got) != string(crl) {
		t.Error("the CRL was re-signed")
	}
	for _, dir := range []string{"x509/server/api", "ssh/certs"} {
		names, _ := filepath.Glob(a.Store.Path(dir) + "/*")
		var recorded int
		for _, r := range ix.Records {
			if strings.HasPrefix(r.File, dir+"/") {
				recorded++
			}
		}
		if len(names) != 2*recorded && dir != "ssh/certs" || dir == "ssh/certs" && len(names) != recorded {
			t.Errorf("%s holds %v, but the index names %d certificate(s) there", dir, names, recorded)
		}
	}
}

// TestUnindexedCertificateRemoved issues with the index out of room: the
// process may write no file past 1500 bytes (RLIMIT_FSIZE, the kernel's
// EFBIG standing in for a full disk) and the index is larger, while the
// key, the certificate and the fresh audit log (just rotated) are smaller.
// The issue fails, and the key and certificate written before the index
// are gone: no stray private key is left that no record names.
func TestUnindexedCertificateRemoved(t *testing.T) {
	if dir := os.Getenv("ZTW_EFBIG_STORE"); dir != "" {
		store, err := state.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		a := &Authority{Store: store, Site: steps.Example(), Now: (&clock{now: t0}).Now}
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim)
		lim.Cur = 1500
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal(err)
		}
		_, err = a.Issue("service-worker-01", "")
		fmt.Printf("helper: issue: %v\n", err)
		return
	}
	a := populated(t)
	if err := os.Rename(a.Store.Path("audit.log"), a.Store.Path("audit.log.1")); err != nil {
		t.Fatal(err)
	}
	before, err := a.Store.Index()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnindexedCertificateRemoved$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ZTW_EFBIG_STORE="+a.Store.Dir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "helper: issue: authority: state: write index.json") ||
		!strings.Contains(string(out), "file too large") {
		t.Fatalf("helper: %v, want the index write to fail\n%s", err, out)
	}
	ix, err := a.Store.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Records) != len(before.Records) {
		t.Fatalf("the index changed: %d records, was %d", len(ix.Records), len(before.Records))
	}
	var files []string
	filepath.WalkDir(a.Store.Path("x509/client"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	var named int
	for _, r := range ix.Records {
		if r.Kind == KindClient {
			named++
		}
	}
	if len(files) != 2*named {
		t.Errorf("x509/client holds %d files for %d indexed certificate(s): %v", len(files), named, files)
	}
	log, err := a.Store.AuditLog()
	if err != nil || len(log) != 1 || log[0].Action != "issue" {
		t.Errorf("the new audit log: %+v, %v; want the one issue record, written first", log, err)
	}
}

// TestMeshRecordWrittenOnlyOnChange: gathering a node's secrets twice
// writes the record of mesh addresses once, so a plan after an apply has
// nothing to write to the store.
func TestMeshRecordWrittenOnlyOnChange(t *testing.T) {
	a := populated(t)
	before := testenv.Mtimes(t, a.Store.Dir())
	time.Sleep(20 * time.Millisecond)
	if _, err := a.Secrets("web"); err != nil {
		t.Fatal(err)
	}
	after := testenv.Mtimes(t, a.Store.Dir())
	for p, m := range before {
		if !after[p].Equal(m) {
			t.Errorf("%s rewritten by a second Secrets", p)
		}
	}
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ztwizard/steps"
	"ztwizard/steps/bundle"
)

// treeSum is a checksum of every path, mode and content under dir.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00" + fi.Mode().String() + "\x00"))
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// must runs the binary and fails the test unless it exits 0.
func must(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := ztw(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("ztwizard %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fleet is a CA host's state and one node's root and state, in dir.
type fleet struct {
	dir, ca, root, nodeState, fp string
}

func newFleet(t *testing.T) *fleet {
	dir, st := workdir(t)
	f := &fleet{dir: dir, ca: st, root: filepath.Join(dir, "web-root"), nodeState: filepath.Join(dir, "web-state")}
	must(t, dir, "ca", "init", "--state", f.ca)
	f.fp = strings.TrimSpace(must(t, dir, "ca", "fingerprint", "--state", f.ca).stdout)
	return f
}

// request makes web's request in its root and imports it on the CA host.
func (f *fleet) request(t *testing.T) {
	t.Helper()
	must(t, f.dir, "node", "request", "--node", "web", "--out", "web.req", "--root", f.root, "--state", f.nodeState)
	must(t, f.dir, "node", "import", "web.req", "--state", f.ca)
}

func (f *fleet) bundle(t *testing.T, node, out string) []byte {
	t.Helper()
	must(t, f.dir, "bundle", "--node", node, "--out", out, "--state", f.ca)
	data, err := os.ReadFile(filepath.Join(f.dir, out))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (f *fleet) apply(t *testing.T, file string, extra ...string) result {
	t.Helper()
	args := append([]string{"apply", "--bundle", file, "--root", f.root, "--state", f.nodeState}, extra...)
	return ztw(t, f.dir, args...)
}

func TestFleetLoopRequestImportBundleApply(t *testing.T) {
	f := newFleet(t)
	f.request(t)
	for _, want := range []string{steps.WireGuardKeyPath, steps.TLSDir + "/api.key", steps.SSHHostKeyPath} {
		fi, err := os.Stat(filepath.Join(f.root, want))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("node request made no 0600 %s: %v", want, err)
		}
	}
	f.bundle(t, "web", "web.ztb")
	if fi, _ := os.Stat(filepath.Join(f.dir, "web.ztb")); fi.Mode().Perm() != 0o644 {
		t.Fatalf("a bundle without private keys is %v, want 0644", fi.Mode().Perm())
	}
	keyBefore, _ := os.ReadFile(filepath.Join(f.root, steps.TLSDir, "api.key"))

	// The first time the node needs the CA's fingerprint.
	if r := f.apply(t, "web.ztb"); r.code != 2 || !strings.Contains(r.stderr, "--ca-fingerprint") {
		t.Fatalf("apply without a trusted CA: exit %d, stderr %s", r.code, r.stderr)
	}
	r := f.apply(t, "web.ztb", "--ca-fingerprint", f.fp)
	if r.code != 0 {
		t.Fatalf("apply --bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The node's own key is kept; the certificate is for it; sshd gets the
	// host certificate from the request's host key.
	keyAfter, _ := os.ReadFile(filepath.Join(f.root, steps.TLSDir, "api.key"))
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("apply replaced the node's own TLS key")
	}
	conf, err := os.ReadFile(filepath.Join(f.root, steps.SSHDropInPath))
	if err != nil || !bytes.Contains(conf, []byte("HostCertificate "+steps.SSHHostCertPath)) {
		t.Fatalf("sshd drop-in lacks the HostCertificate line: %v\n%s", err, conf)
	}
	if _, err := os.Stat(filepath.Join(f.root, steps.SSHHostCertPath)); err != nil {
		t.Fatal(err)
	}
	st := must(t, f.dir, "status", "--state", f.nodeState)
	for _, want := range []string{"node web of site", "bundle serial 1", f.fp, "SSH host certificate", "service api"} {
		if !strings.Contains(st.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, st.stdout)
		}
	}

	// A newer bundle applies without the fingerprint: the node trusts its CA now.
	f.bundle(t, "web", "web2.ztb")
	if r := f.apply(t, "web2.ztb"); r.code != 0 || !strings.Contains(r.stdout, "no changes") {
		t.Fatalf("second bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestFleetBundlesRefused(t *testing.T) {
	f := newFleet(t)
	f.request(t)
	old := f.bundle(t, "web", "old.ztb")
	f.bundle(t, "web", "web.ztb")
	if r := f.apply(t, "web.ztb", "--ca-fingerprint", f.fp); r.code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	f.bundle(t, "db", "db.ztb")

	// A bundle of the same node from another CA.
	other := filepath.Join(f.dir, "other-ca")
	must(t, f.dir, "ca", "init", "--state", other)
	must(t, f.dir, "node", "import", "web.req", "--state", other)
	for range 3 { // a serial above the node's, so only the CA is wrong
		must(t, f.dir, "bundle", "--node", "web", "--out", "foreign.ztb", "--state", other)
	}

	next := f.bundle(t, "web", "next.ztb")
	var env bundle.Envelope
	if err := json.Unmarshal(next, &env); err != nil {
		t.Fatal(err)
	}
	write := func(name string, e bundle.Envelope) {
		data, _ := json.Marshal(e)
		os.WriteFile(filepath.Join(f.dir, name), data, 0o644)
	}
	payload := bytes.Replace(env.Payload, []byte(`"node":"web"`), []byte(`"node":"wex"`), 1)
	write("payload.ztb", bundle.Envelope{Format: env.Format, Version: env.Version, Algorithm: env.Algorithm, Payload: payload, Signature: env.Signature})
	sig := bytes.Clone(env.Signature)
	sig[len(sig)/2] ^= 1
	write("signature.ztb", bundle.Envelope{Format: env.Format, Version: env.Version, Algorithm: env.Algorithm, Payload: env.Payload, Signature: sig})
	// One byte of the file itself, inside the base64 payload.
	i := bytes.Index(next, []byte(`"payload": "`)) + 40
	flipped := bytes.Clone(next)
	if flipped[i] == 'A' {
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	os.WriteFile(filepath.Join(f.dir, "byte.ztb"), flipped, 0o644)
	os.WriteFile(filepath.Join(f.dir, "old-copy.ztb"), old, 0o644)
	payloadPlain, _ := json.Marshal(map[string]string{"not": "a bundle"})
	os.WriteFile(filepath.Join(f.dir, "garbage.ztb"), payloadPlain, 0o644)

	tests := []struct{ file, want string }{
		{"byte.ztb", "bundle refused"},
		{"payload.ztb", "signature does not check"},
		{"signature.ztb", "signature does not check"},
		{"foreign.ztb", "signed by another CA"},
		{"old-copy.ztb", "is not newer than"},
		{"web.ztb", "is not newer than"}, // the same bundle again
		{"db.ztb", `the bundle is for node "db", this host is node "web"`},
		{"garbage.ztb", "not a ztwizard bundle"},
	}
	rootSum, stateSum := treeSum(t, f.root), treeSum(t, f.nodeState)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			for _, cmd := range []string{"plan", "apply"} {
				r := ztw(t, f.dir, cmd, "--bundle", tt.file, "--root", f.root, "--state", f.nodeState)
				if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
					t.Fatalf("%s --bundle %s: exit %d, want 2 and %q\nstderr: %s", cmd, tt.file, r.code, tt.want, r.stderr)
				}
				if treeSum(t, f.root) != rootSum || treeSum(t, f.nodeState) != stateSum {
					t.Fatalf("%s --bundle %s touched the node", cmd, tt.file)
				}
			}
		})
	}
	// And the good one still applies: nothing above moved the serial.
	if r := f.apply(t, "next.ztb"); r.code != 0 {
		t.Fatalf("apply next.ztb: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

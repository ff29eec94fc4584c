package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/bundle"
	"ztwizard/steps/testenv"
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
	// The node knows its name (selfcheck and status read it).
	if b, err := os.ReadFile(filepath.Join(f.root, steps.NodeFilePath)); err != nil || string(b) != "web\n" {
		t.Fatalf("%s after apply --bundle: %q, %v; want web", steps.NodeFilePath, b, err)
	}
	st := must(t, f.dir, "status", "--state", f.nodeState)
	for _, want := range []string{"node web of site", "bundle serial 1", f.fp, "SSH host certificate", "service api"} {
		if !strings.Contains(st.stdout, want) {
			t.Fatalf("status lacks %q:\n%s", want, st.stdout)
		}
	}

	// Scanned after apply: no CA key and no key of another node, in the
	// node's tree or its state; and web's own keys are not on the CA host.
	scanNode(t, f.ca, nil, f.root, f.nodeState)
	for k := range privateKeys(t, f.root) {
		if _, ok := privateKeys(t, f.ca)[k]; ok {
			t.Fatal("the CA host holds a private key of web, which made its own")
		}
	}
	// A node whose keys are made on the CA host: its bundle is 0600 and
	// holds its own keys only.
	f.bundle(t, "db", "db.ztb")
	if fi, _ := os.Stat(filepath.Join(f.dir, "db.ztb")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("a bundle with private keys is %v, want 0600", fi.Mode().Perm())
	}
	dbRoot, dbState := filepath.Join(f.dir, "db-root"), filepath.Join(f.dir, "db-state")
	if r := ztw(t, f.dir, "apply", "--bundle", "db.ztb", "--root", dbRoot, "--state", dbState, "--ca-fingerprint", f.fp); r.code != 0 {
		t.Fatalf("apply db: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dbOwn := privateKeys(t, filepath.Join(f.ca, "wireguard"))
	for k, p := range dbOwn {
		if !strings.HasSuffix(p, "db.key") {
			delete(dbOwn, k)
		}
	}
	if len(dbOwn) != 1 {
		t.Fatalf("db's WireGuard key: %v", dbOwn)
	}
	scanNode(t, f.ca, dbOwn, dbRoot, dbState)

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
	i := bytes.Index(next, []byte(`"payload":"`)) + 40
	if i < 40 {
		t.Fatal("no payload in the bundle")
	}
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

// hostCertOf reads a host certificate file and says whose key it is for.
func hostCertOf(t *testing.T, path string) (certKey string, line []byte) {
	t.Helper()
	line, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-L", "-f", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "host certificate") {
		t.Fatalf("ssh-keygen -L %s: %v\n%s", path, err, out)
	}
	f := strings.Fields(string(line))
	return f[1], line
}

func TestHostCertificatesOnLiveHosts(t *testing.T) {
	dir, st := workdir(t)
	must(t, dir, "ca", "init", "--state", st)

	// ssh sign --host records the key: render carries the certificate and
	// the HostCertificate line, the same certificate every time.
	genKey(t, filepath.Join(dir, "dbhost"))
	must(t, dir, "ssh", "sign", "--host", "db", "--key", "dbhost.pub", "--state", st)
	must(t, dir, "render", "--node", "db", "--out", "db", "--state", st)
	certFile := filepath.Join(dir, "db", steps.SSHHostCertPath)
	_, first := hostCertOf(t, certFile)
	if !certifies(t, certFile, filepath.Join(dir, "dbhost.pub")) {
		t.Fatal("render's host certificate is not for the key ssh sign --host recorded")
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "db", steps.SSHDropInPath))
	if !strings.Contains(string(conf), "HostCertificate "+steps.SSHHostCertPath) {
		t.Fatalf("no HostCertificate line:\n%s", conf)
	}
	must(t, dir, "render", "--node", "db", "--out", "db", "--state", st)
	if _, again := hostCertOf(t, certFile); !bytes.Equal(first, again) {
		t.Fatal("a second render signed a new host certificate")
	}
	signed, _ := os.ReadFile(filepath.Join(dir, "dbhost-cert.pub"))
	if !bytes.Equal(bytes.TrimSpace(signed), bytes.TrimSpace(first)) {
		t.Fatal("render did not carry the certificate ssh sign --host made")
	}

	// A host that holds the CA signs its own host key on apply.
	root := filepath.Join(dir, "web-root")
	os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755)
	genKey(t, filepath.Join(root, steps.SSHHostKeyPath))
	must(t, dir, "apply", "--node", "web", "--root", root, "--no-confirm", "--state", st)
	hostCertOf(t, filepath.Join(root, steps.SSHHostCertPath))
	if !certifies(t, filepath.Join(root, steps.SSHHostCertPath), filepath.Join(root, steps.SSHHostKeyPath+".pub")) {
		t.Fatal("apply did not sign the host's own key")
	}
	conf, _ = os.ReadFile(filepath.Join(root, steps.SSHDropInPath))
	if !strings.Contains(string(conf), "HostCertificate "+steps.SSHHostCertPath) {
		t.Fatalf("apply: no HostCertificate line:\n%s", conf)
	}

	// A node that holds its own keys is built only as a bundle.
	must(t, dir, "node", "request", "--node", "db", "--out", "db.req", "--root", filepath.Join(dir, "db-root"))
	must(t, dir, "node", "import", "db.req", "--state", st)
	if r := ztw(t, dir, "render", "--node", "db", "--out", "db2", "--state", st); r.code != 2 || !strings.Contains(r.stderr, "holds its own keys") {
		t.Fatalf("render of a node with its own keys: exit %d %s", r.code, r.stderr)
	}
}

// certifies tells whether the host certificate at certPath is for the
// public key at pubPath.
func certifies(t *testing.T, certPath, pubPath string) bool {
	t.Helper()
	parse := func(p string) ssh.PublicKey {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return k
	}
	c, ok := parse(certPath).(*ssh.Certificate)
	return ok && c.CertType == ssh.HostCert && bytes.Equal(c.Key.Marshal(), parse(pubPath).Marshal())
}

// privateKeys finds every private key in the files under dir (PEM and
// OpenSSH keys, and WireGuard keys: a file holding one base64 key of 32
// bytes), named by their public key.
func privateKeys(t *testing.T, dir string) map[string]string {
	t.Helper()
	found := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		keys, err := bundle.PrivateKeysIn(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, k := range keys {
			der, err := x509.MarshalPKIXPublicKey(k)
			if err != nil {
				t.Fatal(err)
			}
			found[hex.EncodeToString(der)] = p
		}
		if k, err := wgtypes.ParseKey(strings.TrimSpace(string(data))); err == nil && strings.HasSuffix(p, ".key") {
			found["wg:"+k.PublicKey().String()] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// scanNode fails the test if anything under the node's dirs is a private
// key the CA host holds (a CA key, another node's key) other than allowed.
func scanNode(t *testing.T, caState string, allowed map[string]string, nodeDirs ...string) {
	t.Helper()
	forbidden := privateKeys(t, caState)
	if len(forbidden) < 4 {
		t.Fatalf("the scan found only %d keys in the CA state: it sees too little", len(forbidden))
	}
	for _, d := range nodeDirs {
		for k, p := range privateKeys(t, d) {
			if _, own := allowed[k]; own {
				continue
			}
			if ca, ok := forbidden[k]; ok {
				t.Fatalf("%s holds the private key of the CA host's %s", p, ca)
			}
		}
	}
}

func TestCloudInitUserData(t *testing.T) {
	f := newFleet(t)
	ud := filepath.Join(f.dir, "db-user-data.yaml")
	must(t, f.dir, "bundle", "--node", "db", "--out", "db.ztb", "--cloud-init", ud, "--ztwizard-url", "https://files.example.com/ztwizard", "--state", f.ca)
	fi, err := os.Stat(ud)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("user-data with the node's keys: %v %v, want 0600", fi, err)
	}
	data, _ := os.ReadFile(ud)
	if _, err := exec.LookPath("cloud-init"); err != nil {
		t.Fatalf("cloud-init is required (make test installs it): %v", err)
	}
	if out, err := exec.Command("cloud-init", "schema", "--config-file", ud).CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid cloud-config") {
		t.Fatalf("cloud-init schema: %v\n%s", err, out)
	}
	var doc struct {
		Bootcmd    [][]string `yaml:"bootcmd"`
		WriteFiles []struct {
			Path, Permissions, Encoding, Content string
		} `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Bootcmd) != 1 || len(doc.WriteFiles) != 1 || doc.WriteFiles[0].Permissions != "0600" || doc.WriteFiles[0].Path != bundle.UserDataBundlePath {
		t.Fatalf("user-data: %+v", doc)
	}
	// The bundle is only in write_files, never on the command line cloud-init runs.
	cmd := strings.Join(doc.Bootcmd[0], " ")
	for _, want := range []string{"cloud-init-per once", "mariadb-server", "dpkg-query", "urllib.request", "sha256sum -c", "apply --bundle /var/lib/cloud/instance/user-data.txt --ca-fingerprint " + f.fp + " --no-confirm"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("bootcmd lacks %q:\n%s", want, cmd)
		}
	}
	if strings.Contains(cmd, doc.WriteFiles[0].Content[:40]) || strings.Contains(cmd, "PRIVATE") {
		t.Fatal("the bundle is on bootcmd's command line")
	}
	// ztwizard reads the bundle out of the user-data, as on the VPS.
	root, st := filepath.Join(f.dir, "db-root"), filepath.Join(f.dir, "db-state")
	if r := ztw(t, f.dir, "apply", "--bundle", ud, "--root", root, "--state", st, "--ca-fingerprint", f.fp); r.code != 0 {
		t.Fatalf("apply --bundle user-data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(root, steps.NftablesPath)); err != nil {
		t.Fatal(err)
	}
	// Bad input: a node with its own keys, an ftp URL, no URL.
	f.request(t)
	for _, args := range [][]string{
		{"--node", "web", "--cloud-init", "u.yaml", "--ztwizard-url", "https://x.example/ztwizard"},
		{"--node", "db", "--cloud-init", "u.yaml", "--ztwizard-url", "ftp://x.example/ztwizard"},
		{"--node", "db", "--cloud-init", "u.yaml"},
	} {
		r := ztw(t, f.dir, append([]string{"bundle", "--out", "x.ztb", "--state", f.ca}, args...)...)
		if r.code != 2 {
			t.Errorf("bundle %v: exit %d, want 2: %s", args, r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(f.dir, "u.yaml")); err == nil {
			t.Errorf("bundle %v wrote user-data", args)
		}
	}
}

// TestFleetBundlesRefusedLive: on a live host (its own network and mount
// namespaces, /etc and state), a refused bundle touches neither /etc nor
// the ruleset nor WireGuard.
func TestFleetBundlesRefusedLive(t *testing.T) {
	l := newLab(t, false)
	site := l.writeSite("site.yaml", steps.ExampleYAML)
	l.prepareState(site)
	web := l.addNode("web", nil, nil)
	nodeState := filepath.Join(l.dir, "web-node-state") // no CA here
	caCmd := func(args ...string) {
		t.Helper()
		if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, append([]string{"--state", l.state, "-c", site}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	fpOut, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, "--state", l.state, "ca", "fingerprint")
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.TrimSpace(fpOut)
	b := func(name string) string { return filepath.Join(l.dir, name) }
	caCmd("bundle", "--node", "web", "--out", b("old.ztb"))
	caCmd("bundle", "--node", "web", "--out", b("web.ztb"))
	caCmd("bundle", "--node", "db", "--out", b("db.ztb"))
	// The next bundle changes something: a port opened.
	site2 := l.writeSite("site2.yaml", bytes.Replace(steps.ExampleYAML, []byte("public_tcp: [80, 443]"), []byte("public_tcp: [80, 443, 8443]"), 1))
	if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, "--state", l.state, "-c", site2, "bundle", "--node", "web", "--out", b("next.ztb")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(l.dir, "other-ca")
	for range 5 {
		if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, "--state", other, "-c", site, "bundle", "--node", "web", "--out", b("foreign.ztb")); err != nil {
			t.Fatal(err)
		}
	}
	next, _ := os.ReadFile(b("next.ztb"))
	i := bytes.Index(next, []byte(`"payload":"`)) + 60
	if i < 60 {
		t.Fatal("no payload in the bundle")
	}
	flipped := bytes.Clone(next)
	flipped[i] ^= 'A' ^ 'B'
	if flipped[i] == next[i] {
		flipped[i] = 'Q'
	}
	os.WriteFile(b("byte.ztb"), flipped, 0o600)

	apply := func(file string, extra ...string) result {
		return web.exec(append([]string{bin, "--state", nodeState, "apply", "--bundle", file, "--no-confirm"}, extra...)...)
	}
	if r := apply(b("web.ztb"), "--ca-fingerprint", fp); r.code != 0 {
		t.Fatalf("apply --bundle: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := web.dump()
	if !strings.Contains(before, "table inet ztwizard") {
		t.Fatalf("the bundle's firewall is not in the kernel:\n%s", before)
	}
	for _, f := range []struct{ file, want string }{
		{"byte.ztb", "bundle refused"},
		{"foreign.ztb", "signed by another CA"},
		{"old.ztb", "is not newer than"},
		{"web.ztb", "is not newer than"},
		{"db.ztb", `the bundle is for node "db"`},
	} {
		r := apply(b(f.file))
		if r.code != 2 || !strings.Contains(r.stderr, f.want) {
			t.Fatalf("%s: exit %d, want 2 and %q\n%s", f.file, r.code, f.want, r.stderr)
		}
		if got := web.dump(); got != before {
			t.Fatalf("%s changed the host:\n%s", f.file, testenv.DiffLines(before, got))
		}
	}
	// A good bundle with a confirm window: apply returns once the watchdog
	// is armed; status shows the pending apply; confirm keeps it.
	r := web.exec(bin, "--state", nodeState, "apply", "--bundle", b("next.ztb"), "--confirm", "60s")
	if r.code != 0 || !strings.Contains(r.stdout, "confirm before") {
		t.Fatalf("apply next.ztb --confirm 60s: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st := web.exec(bin, "--state", nodeState, "status")
	if !strings.Contains(st.stdout, "PENDING apply of node web") || !strings.Contains(st.stdout, "bundle serial 3") {
		t.Fatalf("status:\n%s%s", st.stdout, st.stderr)
	}
	if r := web.exec(bin, "--state", nodeState, "confirm"); r.code != 0 {
		t.Fatalf("confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/state"
	"ztwizard/steps/testenv"
)

var bin string

func TestMain(m *testing.M) {
	if addr := os.Getenv(relayEnv); addr != "" {
		os.Exit(relay(addr))
	}
	dir, err := os.MkdirTemp("", "ztwizard-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "ztwizard")
	// The binary as `make build` makes it, the one a node runs.
	if out, err := exec.Command("make", "-s", "-C", "../..", "build", "BIN="+bin).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is how a run of the real binary ended.
type result struct {
	code           int
	stdout, stderr string
}

// ztw runs the real binary in dir, at most testenv.CmdTimeout.
func ztw(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC", "ZTWIZARD_STATE=")
	stdout, stderr, err := testenv.RunCmd(context.Background(), testenv.CmdTimeout, cmd)
	code, err := testenv.ExitCode(err)
	if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout, stderr}
}

// workdir is a folder with the example site.yaml, and the state folder
// path (not created).
func workdir(t *testing.T) (dir, stateDir string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "site.yaml"), steps.ExampleYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, "state")
}

func TestBadInputExitsTwoAndWritesNothing(t *testing.T) {
	dir, st := workdir(t)
	os.WriteFile(filepath.Join(dir, "unreadable.pub"), []byte("ssh-ed25519 AAAA"), 0o000)
	os.WriteFile(filepath.Join(dir, "garbage.pub"), []byte("not a key\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing site", []string{"validate", "-c", "nope.yaml"}, "-c nope.yaml: cannot open: no such file or directory"},
		{"bad flag", []string{"ca", "issue", "--nmae", "x"}, "unknown flag: --nmae"},
		{"stray argument", []string{"validate", "extra"}, `takes no arguments, got "extra"`},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown client", []string{"ca", "issue", "--name", "service-worker-1"}, `unknown client or service "service-worker-1" (did you mean "service-worker-01"?)`},
		{"missing name", []string{"ca", "issue"}, "--name is required"},
		{"bad key type", []string{"ca", "issue", "--name", "api", "--key", "dsa"}, `--key: pki: unknown key type "dsa"`},
		{"unknown user", []string{"ssh", "sign", "--user", "alcie", "--key", "garbage.pub"}, "not an SSH public key"},
		{"unknown user, good key", []string{"ssh", "sign", "--user", "alcie", "--key", "../good.pub"}, `unknown SSH user "alcie" (did you mean "alice"?)`},
		{"missing key", []string{"ssh", "sign", "--user", "alice", "--key", "missing.pub"}, "--key missing.pub: cannot open: no such file or directory"},
		{"unreadable key", []string{"ssh", "sign", "--user", "alice", "--key", "unreadable.pub"}, "--key unreadable.pub: cannot open: permission denied"},
		{"comma principal", []string{"ssh", "sign", "--user", "alice", "--key", "../good.pub", "--principals", "root,a b"}, `--principals: principal "a b"`},
		{"both user and host", []string{"ssh", "sign", "--user", "alice", "--host", "db", "--key", "../good.pub"}, "exactly one of --user or --host"},
		{"bad validity", []string{"ssh", "sign", "--user", "alice", "--key", "../good.pub", "--validity", "forever"}, `invalid argument "forever"`},
		{"missing passphrase file", []string{"ca", "init", "--passphrase-file", "nope"}, "--passphrase-file nope: cannot open: no such file or directory"},
		{"bad site", []string{"ca", "init", "-c", "bad.yaml"}, `bad.yaml:3: version: 7 is not supported`},
		{"list without state", []string{"ca", "list"}, "no state at"},
		{"revoke nothing", []string{"ca", "revoke"}, "exactly one of --name or --serial"},
		{"negative lock wait", []string{"ca", "list", "--lock-wait", "-1s"}, "--lock-wait -1s: must not be negative"},
		{"negative lock wait, apply", []string{"apply", "--node", "db", "--root", "img", "--lock-wait", "-5m"}, "--lock-wait -5m0s: must not be negative"},
		{"confirm with root", []string{"apply", "--node", "db", "--root", "img", "--confirm", "60s"}, "--confirm 1m0s with --root img: only an apply to this host"},
		{"confirm with no-confirm", []string{"apply", "--node", "db", "--confirm", "60s", "--no-confirm"}, "--confirm 1m0s and --no-confirm contradict each other"},
		{"confirm with dry-run", []string{"apply", "--node", "db", "--dry-run", "--confirm", "60s"}, "--confirm 1m0s with --dry-run"},
		{"zero confirm window", []string{"apply", "--node", "db", "--confirm", "0s"}, "--confirm 0s: the window must be positive"},
		{"negative confirm window", []string{"apply", "--node", "db", "--confirm", "-1s"}, "--confirm -1s: the window must be positive"},
	}
	good := filepath.Join(filepath.Dir(dir), "good.pub")
	genKey(t, strings.TrimSuffix(good, ".pub"))
	os.WriteFile(filepath.Join(dir, "bad.yaml"), bytes.Replace(steps.ExampleYAML, []byte("version: 1"), []byte("version: 7"), 1), 0o644)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if os.Geteuid() == 0 && tt.name == "unreadable key" {
				// root reads any file: make it a folder instead.
				os.Remove(filepath.Join(dir, "unreadable.pub"))
				os.Mkdir(filepath.Join(dir, "unreadable.pub"), 0o000)
				tt.want = "--key unreadable.pub: cannot read: is a directory"
			}
			r := ztw(t, dir, append(tt.args, "--state", st)...)
			if r.code != 2 {
				t.Fatalf("exit %d, want 2\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("stderr %q lacks %q", r.stderr, tt.want)
			}
			if tt.name != "bad site" && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("want a one-line reason, got:\n%s", r.stderr)
			}
			if _, err := os.Stat(st); !os.IsNotExist(err) {
				t.Fatalf("bad input created the state folder")
			}
			if _, err := os.Stat(filepath.Join(dir, "img")); !os.IsNotExist(err) {
				t.Fatalf("bad input created the --root folder")
			}
		})
	}
}

func genKey(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

func TestValidate(t *testing.T) {
	dir, _ := workdir(t)
	r := ztw(t, dir, "validate")
	if r.code != 0 || !strings.Contains(r.stdout, `site "oslo-prod" is valid`) || !strings.Contains(r.stdout, "web                  mesh 10.100.0.2") {
		t.Fatalf("validate: %+v", r)
	}
	bad := filepath.Join("..", "..", "testdata", "bad", "many-problems.yaml")
	abs, _ := filepath.Abs(bad)
	r = ztw(t, dir, "validate", "-c", abs)
	if r.code != 2 || !strings.Contains(r.stderr, `many-problems.yaml:19: nodes[1].peers[0]: unknown node "wbe" (did you mean "web"?)`) ||
		!strings.Contains(r.stderr, "4 problem(s)") {
		t.Fatalf("validate bad: %+v", r)
	}
}

func TestIssueBundleOpensInOpenSSL(t *testing.T) {
	dir, st := workdir(t)
	out := filepath.Join(dir, "bundle")
	r := ztw(t, dir, "--state", st, "ca", "issue", "--name", "service-worker-01", "--out", out)
	if r.code != 0 {
		t.Fatalf("issue: %+v", r)
	}
	for name, want := range map[string]os.FileMode{
		"service-worker-01.crt": 0o644, "service-worker-01.key": 0o600, "ca.pem": 0o644,
		"service-worker-01.p12": 0o600, "service-worker-01.p12.pass": 0o600,
	} {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v mode %v, want %o", name, err, fi, want)
		}
	}
	p12 := exec.Command("openssl", "pkcs12", "-in", filepath.Join(out, "service-worker-01.p12"),
		"-passin", "file:"+filepath.Join(out, "service-worker-01.p12.pass"), "-nodes")
	text, err := p12.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12: %v\n%s", err, text)
	}
	for _, want := range []string{"CN=service-worker-01", "CN=Internal Root CA", "PRIVATE KEY"} {
		if !strings.Contains(strings.ReplaceAll(string(text), " = ", "="), want) {
			t.Errorf("pkcs12 lacks %q", want)
		}
	}
	v, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(out, "ca.pem"), filepath.Join(out, "service-worker-01.crt")).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, v)
	}
	r = ztw(t, dir, "--state", st, "ca", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "x509-client  service-worker-01") {
		t.Fatalf("list: %+v", r)
	}
	r = ztw(t, dir, "--state", st, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "x509-ca") || !strings.Contains(r.stdout, "crl") || strings.Contains(r.stdout, "WARN") {
		t.Fatalf("status: %+v", r)
	}
}

func TestSSHSignWritesCertBesideKey(t *testing.T) {
	dir, st := workdir(t)
	key := filepath.Join(dir, "id_ed25519")
	genKey(t, key)
	r := ztw(t, dir, "--state", st, "ssh", "sign", "--user", "alice", "--key", key+".pub", "--validity", "2h")
	if r.code != 0 {
		t.Fatalf("sign: %+v", r)
	}
	out, err := exec.Command("ssh-keygen", "-L", "-f", key+"-cert.pub").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	for _, want := range []string{"alice@oslo-prod#1", "root", "devops"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("certificate lacks %q:\n%s", want, out)
		}
	}
	r = ztw(t, dir, "--state", st, "ssh", "revoke", "--cert", key+"-cert.pub")
	if r.code != 0 || !strings.Contains(r.stdout, "revoked ssh-user alice serial 1") {
		t.Fatalf("revoke: %+v", r)
	}
	q, err := exec.Command("ssh-keygen", "-Q", "-f", filepath.Join(st, "ssh", "revoked.krl"), key+"-cert.pub").CombinedOutput()
	if err == nil || !strings.Contains(string(q), "REVOKED") {
		t.Fatalf("KRL does not revoke: %v %s", err, q)
	}
}

func TestPassphrase(t *testing.T) {
	dir, st := workdir(t)
	os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong"), []byte("guess\n"), 0o600)
	if r := ztw(t, dir, "--state", st, "--passphrase-file", "pass", "ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	for args, want := range map[string]string{
		"":      "is encrypted: give its passphrase with --passphrase-file",
		"wrong": "wrong passphrase",
	} {
		cmd := []string{"--state", st, "ca", "issue", "--name", "api"}
		if args != "" {
			cmd = append(cmd, "--passphrase-file", args)
		}
		r := ztw(t, dir, cmd...)
		if r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("passphrase %q: %+v, want exit 2 and %q", args, r, want)
		}
	}
	if r := ztw(t, dir, "--state", st, "--passphrase-file", "pass", "ca", "issue", "--name", "api"); r.code != 0 {
		t.Fatalf("issue with passphrase: %+v", r)
	}

	// A key, a certificate or a binary given for the passphrase is
	// refused before anything is read from the store or written to it,
	// and no line of it is printed.
	os.WriteFile(filepath.Join(dir, "long"), bytes.Repeat([]byte("x"), 5000), 0o600)
	pub, _ := os.ReadFile(filepath.Join(st, "ssh", "user_ca.pub"))
	os.WriteFile(filepath.Join(dir, "user_ca.pub"), pub, 0o600)
	cert, _ := os.ReadFile(filepath.Join(st, "ca", "ca.pem"))
	os.WriteFile(filepath.Join(dir, "ca.pem"), cert, 0o600)
	before := testenv.TreeDump(t, st)
	for file, want := range map[string]string{
		filepath.Join(st, "ca", "ca-key.pem"): "holds a key or certificate, not a passphrase",
		"ca.pem":                              "holds a key or certificate, not a passphrase",
		"user_ca.pub":                         "holds a key or certificate, not a passphrase",
		"long":                                "longer than 1024 bytes",
	} {
		for _, cmd := range [][]string{{"ca", "init"}, {"ca", "issue", "--name", "service-worker-01"}} {
			r := ztw(t, dir, append([]string{"--state", st, "--passphrase-file", file}, cmd...)...)
			if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "BEGIN") || strings.Contains(r.stderr, "xxxx") {
				t.Errorf("%v with passphrase file %s: %+v, want exit 2 and %q", cmd, file, r, want)
			}
		}
	}
	if got := testenv.TreeDump(t, st); got != before {
		t.Errorf("a refused passphrase file changed the store:\n%s", testenv.DiffLines(before, got))
	}
}

// TestConcurrentProcesses races real ztwizard processes for one store:
// they take turns, and every certificate lands in the index and the log.
func TestConcurrentProcesses(t *testing.T) {
	dir, st := workdir(t)
	if r := ztw(t, dir, "--state", st, "ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	const n = 6
	var wg sync.WaitGroup
	results := make([]result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := filepath.Join(dir, fmt.Sprintf("k%d", i))
			genKey(t, key)
			if i%2 == 0 {
				results[i] = ztw(t, dir, "--state", st, "ca", "issue", "--name", "service-worker-01")
			} else {
				results[i] = ztw(t, dir, "--state", st, "ssh", "sign", "--user", "alice", "--key", key+".pub")
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("process %d: %+v", i, r)
		}
	}
	store, err := state.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := store.Index()
	if err != nil {
		t.Fatalf("index corrupted: %v", err)
	}
	serials := map[string]bool{}
	for _, r := range ix.Records {
		if serials[r.Kind+r.Serial] {
			t.Fatalf("serial %s issued twice", r.Serial)
		}
		serials[r.Kind+r.Serial] = true
	}
	if len(ix.Records) != 1+n || ix.NextSSHSerial != n/2+1 {
		t.Fatalf("index has %d records, next ssh serial %d; want %d and %d", len(ix.Records), ix.NextSSHSerial, 1+n, n/2+1)
	}
}

func TestLockedStoreFailsClearly(t *testing.T) {
	dir, st := workdir(t)
	store, err := state.Open(st)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := store.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	start := time.Now()
	r := ztw(t, dir, "--state", st, "--lock-wait", "300ms", "ca", "init")
	if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("is in use by another ztwizard (pid %d)", os.Getpid())) {
		t.Fatalf("locked store: %+v", r)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("waited %v for a 300ms lock wait", d)
	}
}

func TestWizardPlainWithoutTerminal(t *testing.T) {
	dir, _ := workdir(t)
	r := ztw(t, dir, "wizard", "--example", "--state", filepath.Join(dir, "scratch"))
	if r.code != 0 || !strings.Contains(r.stdout, `site "oslo-prod"`) || !strings.Contains(r.stdout, "the site is valid.") {
		t.Fatalf("wizard: %+v", r)
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"validate"}, {"ca", "issue"}, {"ca", "revoke"}, {"ca", "crl"}, {"ca", "list"},
		{"ssh", "sign"}, {"ssh", "revoke"}, {"status"}, {"ca"}, {"ssh"}, {"wg"}, {"wg", "export"}} {
		r := ztw(t, t.TempDir(), append(args, "--help")...)
		if r.code != 0 || !strings.Contains(strings.ToLower(r.stdout), "example") || !strings.Contains(r.stdout, "ztwizard "+strings.Join(args, " ")) {
			t.Errorf("%v --help: exit %d\n%s", args, r.code, r.stdout)
		}
	}
}

func TestSSHCALines(t *testing.T) {
	dir, st := workdir(t)
	r := ztw(t, dir, "--state", st, "ssh", "ca")
	if r.code != 0 {
		t.Fatalf("ssh ca: %+v", r)
	}
	pub, err := os.ReadFile(filepath.Join(st, "ssh", "host_ca.pub"))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(pub))
	want := "@cert-authority * " + fields[0] + " " + fields[1]
	if !strings.Contains(r.stdout, want) {
		t.Fatalf("output lacks %q:\n%s", want, r.stdout)
	}
	userPub, _ := os.ReadFile(filepath.Join(st, "ssh", "user_ca.pub"))
	if !strings.Contains(r.stdout, string(userPub)) {
		t.Fatalf("output lacks the user CA key:\n%s", r.stdout)
	}
}

func TestRender(t *testing.T) {
	dir, st := workdir(t)
	out := filepath.Join(dir, "db")
	r := ztw(t, dir, "--state", st, "render", "--node", "db", "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "rendered node db") {
		t.Fatalf("render: %+v", r)
	}
	for path, want := range map[string]os.FileMode{
		".": 0o700, "nftables.nft": 0o644, "zt0.conf": 0o600,
		"etc/wireguard/zt0.conf": 0o600, "etc/ztwizard/wireguard/private.key": 0o600,
		"etc/mysql/mariadb.conf.d/90-ztwizard.cnf": 0o644, "etc/ssh/sshd_config.d/50-ztwizard.conf": 0o644,
		"etc/systemd/system/ztwizard-firewall.service": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(out, path))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v, want %o", path, err, fi, want)
		}
	}
	cnf, _ := os.ReadFile(filepath.Join(out, "etc/mysql/mariadb.conf.d/90-ztwizard.cnf"))
	if !strings.Contains(string(cnf), "bind-address = 10.100.0.1") {
		t.Errorf("mariadb not bound to the mesh address:\n%s", cnf)
	}
	if o, err := exec.Command("nft", "-c", "-f", filepath.Join(out, "nftables.nft")).CombinedOutput(); err != nil {
		t.Fatalf("nft -c: %v\n%s", err, o)
	}
	if _, err := os.Stat(filepath.Join(out, "etc/nginx")); !os.IsNotExist(err) {
		t.Errorf("db has no services but got nginx files")
	}
	again := ztw(t, dir, "--state", st, "render", "--node", "db", "--out", out)
	if again.code != 0 || !strings.Contains(again.stdout, "(0 changed)") {
		t.Fatalf("second render changed files: %+v", again)
	}
	web := ztw(t, dir, "--state", st, "render", "--node", "web", "--out", filepath.Join(dir, "web"))
	if web.code != 0 {
		t.Fatalf("render web: %+v", web)
	}
	if _, err := os.Stat(filepath.Join(dir, "web/etc/ztwizard/tls/api.key")); err != nil {
		t.Errorf("web lacks its server key: %v", err)
	}
	bad := ztw(t, dir, "--state", st, "render", "--node", "dbb", "--out", filepath.Join(dir, "nope"))
	if bad.code != 2 || !strings.Contains(bad.stderr, `unknown node "dbb"`) {
		t.Fatalf("bad node: %+v", bad)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Fatalf("a refused render created its folder")
	}
}

// TestParsedSiteCache: a command that opens the state to write records the
// parsed site, and the next command on the same bytes takes it from there
// (shown by a cache whose body was swapped for another site under the same
// key); changed bytes are parsed again, and a site that became invalid is
// refused as ever.
func TestParsedSiteCache(t *testing.T) {
	dir, st := workdir(t)
	if r := ztw(t, dir, "--state", st, "render", "--node", "db", "--out", filepath.Join(dir, "db")); r.code != 0 {
		t.Fatalf("render: %+v", r)
	}
	cache := filepath.Join(st, authority.ParsedCacheFile)
	data, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(cache); fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", fi.Mode().Perm())
	}
	validate := func() result {
		t.Helper()
		return ztw(t, dir, "--state", st, "validate")
	}
	if r := validate(); r.code != 0 || !strings.Contains(r.stdout, `site "oslo-prod" is valid`) {
		t.Fatalf("validate: %+v", r)
	}

	other := steps.Example()
	other.Site = "from-the-cache"
	body, err := json.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	head, _, _ := bytes.Cut(data, []byte("\n"))
	key, _, _ := strings.Cut(strings.TrimPrefix(string(head), "key "), " ")
	sum := sha256.Sum256(body)
	swapped := append([]byte("key "+key+" sum "+hex.EncodeToString(sum[:])+"\n"), body...)
	if err := os.WriteFile(cache, swapped, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := validate(); r.code != 0 || !strings.Contains(r.stdout, `site "from-the-cache" is valid`) {
		t.Fatalf("validate did not take the cache: %+v", r)
	}

	site := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(site, append(bytes.Clone(steps.ExampleYAML), "# edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := validate(); r.code != 0 || !strings.Contains(r.stdout, `site "oslo-prod" is valid`) {
		t.Fatalf("validate of changed bytes: %+v", r)
	}
	if err := os.WriteFile(site, bytes.Replace(steps.ExampleYAML, []byte("site: oslo-prod"), []byte("site: Oslo_Prod"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := validate(); r.code != 2 || !strings.Contains(r.stderr, "Oslo_Prod") {
		t.Fatalf("validate of an invalid site: %+v", r)
	}
}

// TestCRLNeverMakesACA: the CRL timer runs `ca crl --if-due` on every node
// with services; where the CA does not live it must fail and create nothing.
func TestCRLNeverMakesACA(t *testing.T) {
	dir, st := workdir(t)
	if err := os.MkdirAll(st, 0o700); err != nil {
		t.Fatal(err)
	}
	r := ztw(t, dir, "--state", st, "ca", "crl", "--if-due", "--out", filepath.Join(dir, "crl.pem"))
	if r.code != 2 || !strings.Contains(r.stderr, "a CRL is signed where the CA lives") {
		t.Fatalf("ca crl without a CA: %+v", r)
	}
	for _, p := range []string{filepath.Join(st, "ca"), filepath.Join(dir, "crl.pem")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s was created", p)
		}
	}
	if r := ztw(t, dir, "--state", st, "ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r = ztw(t, dir, "--state", st, "ca", "crl", "--if-due", "--out", filepath.Join(dir, "crl.pem"))
	if r.code != 0 || !strings.Contains(r.stdout, "not due, kept") {
		t.Fatalf("ca crl --if-due after init: %+v", r)
	}
}

// TestWeakPermissions opens a store whose folders and key files someone
// opened up (chmod 0777, 0644): they are closed again and stderr says so. A
// passphrase file others may read is refused, and nothing is written.
func TestWeakPermissions(t *testing.T) {
	dir, st := workdir(t)
	if r := ztw(t, dir, "--state", st, "ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	for _, p := range []string{"", "ca", "ssh"} {
		os.Chmod(filepath.Join(st, p), 0o777)
	}
	for _, p := range []string{"ca/ca-key.pem", "ssh/user_ca", "index.json"} {
		os.Chmod(filepath.Join(st, p), 0o644)
	}
	os.Chmod(filepath.Join(st, "ca/ca.pem"), 0o666)
	r := ztw(t, dir, "--state", st, "ca", "list")
	if r.code != 0 {
		t.Fatalf("list: %+v", r)
	}
	for _, want := range []string{"ca was mode 0777, now 0700", "ca/ca-key.pem was mode 0644, now 0600",
		"ssh/user_ca was mode 0644, now 0600", "index.json was mode 0644, now 0600", "ca/ca.pem was mode 0666, now 0644"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	for p, want := range map[string]os.FileMode{"": 0o700, "ca": 0o700, "ssh": 0o700, "ca/ca-key.pem": 0o600,
		"ssh/user_ca": 0o600, "index.json": 0o600, "ca/ca.pem": 0o644} {
		if fi, err := os.Stat(filepath.Join(st, p)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	if r := ztw(t, dir, "--state", st, "ca", "list"); r.code != 0 || r.stderr != "" {
		t.Errorf("second list still reports: %+v", r)
	}

	os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600)
	os.Chmod(filepath.Join(dir, "pass"), 0o644)
	before := testenv.TreeDump(t, st)
	r = ztw(t, dir, "--state", st, "--passphrase-file", "pass", "ca", "issue", "--name", "api")
	if r.code != 2 || !strings.Contains(r.stderr, "--passphrase-file pass: mode 0644 lets group or others read it") || strings.Contains(r.stderr, "s3cret") {
		t.Errorf("passphrase file 0644: %+v, want exit 2 and a clear refusal", r)
	}
	if got := testenv.TreeDump(t, st); got != before {
		t.Errorf("a refused passphrase file changed the store:\n%s", testenv.DiffLines(before, got))
	}
}

// TestLeftoversOfAKilledRunRemoved leaves what a process killed between
// writing a temporary file and renaming it leaves (a private key in a
// .atomicfile-*.tmp, and its pid in the lock it never released): the next
// run that opens the store, even only to read it, removes it and says so.
func TestLeftoversOfAKilledRunRemoved(t *testing.T) {
	dir, st := workdir(t)
	if r := ztw(t, dir, "--state", st, "ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	key, err := os.ReadFile(filepath.Join(st, "ca/ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	left := []string{"ca/.atomicfile-KILLED1.tmp", ".atomicfile-KILLED2.tmp", "x509/client/service-worker-01/.atomicfile-KILLED3.tmp"}
	for _, p := range left {
		os.MkdirAll(filepath.Dir(filepath.Join(st, p)), 0o700)
		if err := os.WriteFile(filepath.Join(st, p), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(st, "lock"), []byte("999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := ztw(t, dir, "--state", st, "ca", "list")
	if r.code != 0 {
		t.Fatalf("list: %+v", r)
	}
	for _, p := range left {
		if _, err := os.Lstat(filepath.Join(st, p)); !os.IsNotExist(err) {
			t.Errorf("%s left in the store: %v", p, err)
		}
		if !strings.Contains(r.stderr, "removed "+p+", left by a write that was cut short") {
			t.Errorf("stderr does not name %s:\n%s", p, r.stderr)
		}
	}
}

// TestNoNewCAOverOldKeys removes ca/ca.pem from a store that issued
// certificates: ca issue and render fail (exit 1) naming the missing file,
// and neither writes anything (no new CA key, plain or not).
func TestNoNewCAOverOldKeys(t *testing.T) {
	dir, st := workdir(t)
	os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600)
	for _, args := range [][]string{{"ca", "init"}, {"ca", "issue", "--name", "service-worker-01"}} {
		if r := ztw(t, dir, append(args, "--state", st, "--passphrase-file", "pass")...); r.code != 0 {
			t.Fatalf("%s: %+v", args, r)
		}
	}
	os.Remove(filepath.Join(st, "ca/ca.pem"))
	before := testenv.TreeDump(t, st)
	for _, args := range [][]string{
		{"ca", "issue", "--name", "api"},
		{"render", "--node", "web", "--out", filepath.Join(dir, "out")},
		{"ca", "init", "--passphrase-file", "pass"},
	} {
		r := ztw(t, dir, append(args, "--state", st)...)
		if r.code != 1 || !strings.Contains(r.stderr, "the X.509 CA certificate ca/ca.pem is missing from the state store") ||
			!strings.Contains(r.stderr, "ca/ca-key.pem") {
			t.Errorf("%s: %+v, want exit 1 naming ca/ca.pem", args, r)
		}
	}
	if got := testenv.TreeDump(t, st); got != before {
		t.Errorf("the store changed:\n%s", testenv.DiffLines(before, got))
	}
}

// TestAuditLogReadOnly mounts audit.log read-only (a bind mount in a mount
// namespace of its own, which root cannot write through): ca issue, ca
// revoke and ssh sign fail, no certificate is left and the index records
// nothing new.
func TestAuditLogReadOnly(t *testing.T) {
	testenv.Need(t, "unshare", "mount")
	dir, st := workdir(t)
	for _, args := range [][]string{{"ca", "init"}, {"ca", "issue", "--name", "api"}} {
		if r := ztw(t, dir, append(args, "--state", st)...); r.code != 0 {
			t.Fatalf("%s: %+v", args, r)
		}
	}
	genKey(t, filepath.Join(dir, "id"))
	records := func() []state.Record {
		store, err := state.Open(st)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := store.Index()
		if err != nil {
			t.Fatal(err)
		}
		return ix.Records
	}
	before := records()
	log := filepath.Join(st, "audit.log")
	script := `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"`
	for _, args := range [][]string{
		{"ca", "issue", "--name", "service-worker-01"},
		{"ca", "revoke", "--name", "api"},
		{"ssh", "sign", "--user", "alice", "--key", filepath.Join(dir, "id.pub")},
	} {
		cmd := exec.Command("unshare", append([]string{"-m", "sh", "-c", script, "sh", log, bin, "--state", st}, args...)...)
		cmd.Dir = dir
		stdout, stderr, err := testenv.RunCmd(context.Background(), testenv.CmdTimeout, cmd)
		code, err := testenv.ExitCode(err)
		if err != nil {
			t.Fatal(err)
		}
		if code != 1 || !strings.Contains(stderr, "audit.log: read-only file system") {
			t.Errorf("%s with audit.log read-only: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and the audit error", args, code, stdout, stderr)
		}
	}
	after := records()
	if len(after) != len(before) || after[len(after)-1].RevokedAt != nil {
		t.Errorf("the index changed: %d records (was %d), last %+v", len(after), len(before), after[len(after)-1])
	}
	for _, p := range []string{"x509/client", "ssh/certs"} {
		if _, err := os.Stat(filepath.Join(st, p)); !os.IsNotExist(err) {
			t.Errorf("%s exists: something was issued without an audit record", p)
		}
	}
}

// TestIndexResetRefused issues, revokes and signs, then resets index.json
// ({}, null, empty) or puts an older copy back: ca crl and ssh sign fail
// (exit 1) saying the index is behind, the CRL keeps its number and its
// revocation, and no SSH serial is used twice.
func TestIndexResetRefused(t *testing.T) {
	dir, st := workdir(t)
	genKey(t, filepath.Join(dir, "id"))
	run := func(args ...string) result {
		return ztw(t, dir, append([]string{"--state", st}, args...)...)
	}
	if r := run("ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	older, err := os.ReadFile(filepath.Join(st, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"ca", "issue", "--name", "api"}, {"ca", "revoke", "--name", "api"},
		{"ssh", "sign", "--user", "alice", "--key", "id.pub"}} {
		if r := run(args...); r.code != 0 {
			t.Fatalf("%s: %+v", args, r)
		}
	}
	crl, err := os.ReadFile(filepath.Join(st, "ca/crl.pem"))
	if err != nil {
		t.Fatal(err)
	}
	current, err := os.ReadFile(filepath.Join(st, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	certs := testenv.TreeDump(t, filepath.Join(st, "ssh/certs"))
	for name, content := range map[string][]byte{"{}": []byte("{}\n"), "null": []byte("null"), "empty": nil, "older": older} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(st, "index.json"), content, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"ca", "crl"}, {"ssh", "sign", "--user", "alice", "--key", "id.pub"}, {"ca", "list"}} {
				r := run(args...)
				if r.code != 1 || !strings.Contains(r.stderr, "the index is behind what this store has issued") {
					t.Errorf("%s: %+v, want exit 1: the index is behind", args, r)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(st, "ca/crl.pem")); !bytes.Equal(got, crl) {
				t.Error("a CRL was signed from the reset index")
			}
			if got := testenv.TreeDump(t, filepath.Join(st, "ssh/certs")); got != certs {
				t.Errorf("an SSH certificate was signed from the reset index:\n%s", testenv.DiffLines(certs, got))
			}
		})
	}
	if err := os.WriteFile(filepath.Join(st, "index.json"), current, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run("ca", "crl"); r.code != 0 {
		t.Fatalf("with the index put back: %+v", r)
	}
}

// TestPlanWritesNoState runs plan and apply --dry-run (into a --root
// folder) on no state at all and on a store with only its CAs: neither
// creates nor changes anything in the state folder, and both say what
// apply would write there.
func TestPlanWritesNoState(t *testing.T) {
	dir, st := workdir(t)
	root := filepath.Join(dir, "root")
	for _, args := range [][]string{{"plan"}, {"apply", "--dry-run"}} {
		r := ztw(t, dir, append(args, "--state", st, "--node", "web", "--root", root)...)
		if r.code != 0 {
			t.Fatalf("%s: %+v", args, r)
		}
		for _, want := range []string{"nothing written", "  create ca/ca-key.pem\n", "  create ssh/user_ca\n",
			"  create wireguard/web.key\n", "  create index.json\n", "+++ /etc/ztwizard/tls/api.crt\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s: stdout lacks %q:\n%s", args, want, r.stdout)
			}
		}
		if _, err := os.Lstat(st); !os.IsNotExist(err) {
			t.Fatalf("%s made the state folder", args)
		}
		if _, err := os.Lstat(root); !os.IsNotExist(err) {
			t.Fatalf("%s made the --root folder", args)
		}
	}

	if r := ztw(t, dir, "--state", st, "ca", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	before := testenv.TreeDump(t, st)
	for _, args := range [][]string{{"plan"}, {"apply", "--dry-run"}} {
		r := ztw(t, dir, append(args, "--state", st, "--node", "web", "--root", root)...)
		if r.code != 0 || !strings.Contains(r.stdout, "  create wireguard/web.key\n") || strings.Contains(r.stdout, "create ca/ca-key.pem") {
			t.Errorf("%s on a store with its CAs: %+v", args, r)
		}
	}
	if got := testenv.TreeDump(t, st); got != before {
		t.Errorf("plan changed the state folder:\n%s", testenv.DiffLines(before, got))
	}
}

// TestForeignCAKeyRefused swaps another store's CA keys in (X.509, SSH
// user, SSH host): ca crl, ssh sign and render fail with exit 1 naming the
// mismatch, and sign nothing.
func TestForeignCAKeyRefused(t *testing.T) {
	dir, st := workdir(t)
	other := filepath.Join(dir, "other")
	genKey(t, filepath.Join(dir, "id"))
	for _, s := range []string{st, other} {
		if r := ztw(t, dir, "--state", s, "ca", "init"); r.code != 0 {
			t.Fatalf("init: %+v", r)
		}
	}
	for _, tt := range []struct {
		file string
		args []string
		want string
	}{
		{"ca/ca-key.pem", []string{"ca", "crl"}, "ca/ca-key.pem does not match the CA certificate"},
		{"ssh/user_ca", []string{"ssh", "sign", "--user", "alice", "--key", "id.pub"}, "ssh/user_ca does not match"},
		{"ssh/host_ca", []string{"render", "--node", "db", "--out", filepath.Join(dir, "out")}, "ssh/host_ca does not match"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			orig, err := os.ReadFile(filepath.Join(st, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			foreign, err := os.ReadFile(filepath.Join(other, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(st, tt.file), foreign, 0o600)
			defer os.WriteFile(filepath.Join(st, tt.file), orig, 0o600)
			before := testenv.TreeDump(t, st)
			r := ztw(t, dir, append([]string{"--state", st}, tt.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("%s with a foreign key: %+v, want exit 1 and %q", tt.args, r, tt.want)
			}
			if got := testenv.TreeDump(t, st); got != before {
				t.Errorf("the store changed:\n%s", testenv.DiffLines(before, got))
			}
		})
	}
}

// TestBinaryIsStatic: the binary `make build` makes asks for no dynamic
// loader and no shared library, so a node runs it whatever its C library
// (an image's Debian may be older than the build host's).
func TestBinaryIsStatic(t *testing.T) {
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary names a dynamic loader (PT_INTERP): it was built with cgo")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}
}

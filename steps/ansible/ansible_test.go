package ansible

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// hostCA is a fixed SSH host CA public key.
func hostCA(t testing.TB) ssh.PublicKey {
	t.Helper()
	seed := sha256.Sum256([]byte("ztwizard ansible golden host CA"))
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed[:]).Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// goldenOptions are fixed options for the golden files.
func goldenOptions(t testing.TB) Options {
	return Options{
		User:     "root",
		Identity: "/home/alice/.ssh/id_ed25519",
		Binary:   "/usr/local/bin/ztwizard",
		Site:     "/home/alice/oslo/site.yaml",
		State:    "/home/alice/.local/share/ztwizard",
		HostCA:   hostCA(t),
		HostKeys: map[string]string{"web": "SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"},
	}
}

func example(t testing.TB) *steps.Site {
	t.Helper()
	site, err := steps.Parse(steps.ExampleYAML, "site.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return site
}

// TestGolden compares the files written for the example site with
// testdata/golden (go test ./steps/ansible -run TestGolden -update rewrites
// them), then has Debian's ansible-core read them: the inventory lists
// every node with its address and connection settings, and the playbook
// passes --syntax-check.
func TestGolden(t *testing.T) {
	files, err := Generate(example(t), goldenOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		if f.Mode != 0o644 {
			t.Errorf("%s: mode %o, want 644 (no secrets in it)", f.Name, f.Mode)
		}
		golden := filepath.Join("testdata", "golden", f.Name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, f.Content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Content, want) {
			t.Errorf("%s differs from %s (-update rewrites it):\n%s", f.Name, golden, testenv.DiffLines(string(want), string(f.Content)))
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(names, " "); got != "inventory.yml push.yml known_hosts" {
		t.Errorf("files %s", got)
	}

	testenv.Need(t, "ansible-inventory", "ansible-playbook")
	out := ansibleRun(t, dir, "ansible-inventory", "-i", InventoryFile, "--list")
	var inv struct {
		Meta struct {
			HostVars map[string]map[string]any `json:"hostvars"`
		} `json:"_meta"`
		Nodes struct {
			Hosts []string `json:"hosts"`
		} `json:"ztwizard_nodes"`
	}
	if err := json.Unmarshal([]byte(out), &inv); err != nil {
		t.Fatalf("ansible-inventory --list: %v\n%s", err, out)
	}
	if got := strings.Join(inv.Nodes.Hosts, " "); got != "db web" {
		t.Errorf("group ztwizard_nodes: hosts %q, want db web", got)
	}
	for _, c := range []struct{ host, key, want string }{
		{"db", "ansible_host", "192.168.1.100"},
		{"web", "ansible_host", "192.168.1.50"},
		{"db", "ztwizard_node", "db"},
		{"db", "ansible_user", "root"},
		{"db", "ansible_ssh_private_key_file", "/home/alice/.ssh/id_ed25519"},
		{"db", "ztwizard_ssh_certificate", "/home/alice/.ssh/id_ed25519-cert.pub"},
		{"db", "host_key_fingerprint", ""},
		{"web", "host_key_fingerprint", "SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"},
		{"web", "ztwizard_site", "/home/alice/oslo/site.yaml"},
		{"web", "ztwizard_state", "/home/alice/.local/share/ztwizard"},
		{"web", "ztwizard_confirm", "120s"},
		{"web", "ansible_ssh_common_args", `-o StrictHostKeyChecking=yes -o "GlobalKnownHostsFile={{ ztwizard_known_hosts }}" -o "UserKnownHostsFile={{ ztwizard_pinned_hosts }}" -o IdentitiesOnly=yes -o "CertificateFile={{ ztwizard_ssh_certificate }}"`},
	} {
		if got, _ := inv.Meta.HostVars[c.host][c.key].(string); got != c.want {
			t.Errorf("%s: %s = %q, want %q", c.host, c.key, got, c.want)
		}
	}
	out = ansibleRun(t, dir, "ansible-playbook", "-i", InventoryFile, "--syntax-check", PlaybookFile)
	if !strings.Contains(out, "playbook: "+PlaybookFile) {
		t.Errorf("ansible-playbook --syntax-check:\n%s", out)
	}
	// Every task, in order, as ansible-playbook reads them.
	out = ansibleRun(t, dir, "ansible-playbook", "-i", InventoryFile, "--list-tasks", PlaybookFile)
	for _, task := range []string{"Pin it in pinned_hosts", "Import it on the CA host", "Build the node's bundle, signed by the CA",
		"Apply it; unless confirmed, the node rolls it back at the deadline", "Confirm from a new SSH connection, proof that you still get in"} {
		if !strings.Contains(out, task) {
			t.Errorf("ansible-playbook --list-tasks has no %q:\n%s", task, out)
		}
	}
}

// ansibleRun runs an Ansible program in dir with a home of its own and
// returns its standard output; it fails t if the program fails.
func ansibleRun(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "ANSIBLE_NOCOLOR=1")
	out, _, err := testenv.RunCmd(context.Background(), testenv.CmdTimeout, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGenerateRefuses checks that options the files could not carry
// safely, and sites the inventory cannot describe, are refused with an
// error naming the option and its value.
func TestGenerateRefuses(t *testing.T) {
	noEndpoint := testenv.Substitute(t, steps.ExampleYAML, `endpoint: "192.168.1.50:51820",  `, "")
	tests := []struct {
		name string
		site []byte
		edit func(*Options)
		want string
	}{
		{"bad user", nil, func(o *Options) { o.User = "root; rm" }, `--user "root; rm": not an account name`},
		{"empty user", nil, func(o *Options) { o.User = "" }, `--user "": not an account name`},
		{"relative identity", nil, func(o *Options) { o.Identity = "id_ed25519" }, `--identity "id_ed25519": must be an absolute path`},
		{"quote in site path", nil, func(o *Options) { o.Site = `/a"b/site.yaml` }, `-c "/a\"b/site.yaml": holds '"'`},
		{"template in state", nil, func(o *Options) { o.State = "/x/{{ lookup(pipe) }}" }, `--state "/x/{{ lookup(pipe) }}": holds "{{"`},
		{"newline in binary", nil, func(o *Options) { o.Binary = "/bin/zt\nwizard" }, `--binary "/bin/zt\nwizard": holds '\n'`},
		{"certificate with space is fine, backslash not", nil, func(o *Options) { o.Certificate = `/a\b` }, `--certificate "/a\\b": holds '\\'`},
		{"passphrase relative", nil, func(o *Options) { o.PassphraseFile = "pass" }, `--passphrase-file "pass": must be an absolute path`},
		{"unknown node", nil, func(o *Options) {
			o.HostKeys = map[string]string{"dbx": "SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"}
		}, `--host-key dbx=SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE: no node "dbx" in the site`},
		{"md5 fingerprint", nil, func(o *Options) { o.HostKeys = map[string]string{"db": "MD5:aa:bb"} }, `--host-key db="MD5:aa:bb": not a SHA256 fingerprint`},
		{"short fingerprint", nil, func(o *Options) { o.HostKeys = map[string]string{"db": "SHA256:abc"} }, `--host-key db="SHA256:abc": not a SHA256 fingerprint`},
		{"negative confirm", nil, func(o *Options) { o.Confirm = -1 }, `--confirm -1ns: must be positive`},
		{"no endpoint", noEndpoint, func(*Options) {}, `nodes[1] (web): no endpoint`},
		{"no host CA", nil, func(o *Options) { o.HostCA = nil }, `no SSH host CA`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site := example(t)
			if tt.site != nil {
				var err error
				if site, err = steps.Parse(tt.site, "site.yaml"); err != nil {
					t.Fatal(err)
				}
			}
			o := goldenOptions(t)
			tt.edit(&o)
			files, err := Generate(site, o)
			if err == nil {
				t.Fatalf("no error; wrote %d files", len(files))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to hold %q", err, tt.want)
			}
		})
	}
}

func TestValidFingerprint(t *testing.T) {
	for fp, want := range map[string]bool{
		"SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE":  true,
		"SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE=": false,
		"sha256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE":  false,
		"TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE":         false,
		"SHA256:":   false,
		"SHA256:!!": false,
	} {
		if got := ValidFingerprint(fp); got != want {
			t.Errorf("ValidFingerprint(%q) = %v, want %v", fp, got, want)
		}
	}
}

// TestResolveWrite fills the defaults and makes paths absolute as the
// command does, writes Generate's files into a 0700 folder, and writes
// nothing, not even the folder, for options Generate refuses.
func TestResolveWrite(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("HOME", "/home/alice")
	o := Options{User: "root", Site: "site.yaml", State: "state", HostCA: hostCA(t)}
	if err := o.Resolve(); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][2]string{{o.Identity, "/home/alice/.ssh/id_ed25519"}, {o.Binary, self},
		{o.Site, filepath.Join(cwd, "site.yaml")}, {o.State, filepath.Join(cwd, "state")}, {o.Certificate, ""}, {o.PassphraseFile, ""}} {
		if c[0] != c[1] {
			t.Errorf("resolved %q, want %q", c[0], c[1])
		}
	}
	site := example(t)
	paths, err := Write("push", site, o)
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(site, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(files) {
		t.Fatalf("wrote %q for %d files", paths, len(files))
	}
	for i, f := range files {
		if paths[i] != filepath.Join("push", f.Name) {
			t.Errorf("path %q, want push/%s", paths[i], f.Name)
		}
		got, err := os.ReadFile(paths[i])
		fi, serr := os.Stat(paths[i])
		if err != nil || serr != nil || !bytes.Equal(got, f.Content) || uint32(fi.Mode().Perm()) != f.Mode {
			t.Errorf("%s: %v %v, mode %v, want Generate's content and mode %o", paths[i], err, serr, fi.Mode(), f.Mode)
		}
	}
	if fi, err := os.Stat("push"); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the folder: %v, want 0700", err)
	}
	o.User = "a b"
	if _, err := Write("bad", site, o); err == nil || !strings.Contains(err.Error(), `--user "a b"`) {
		t.Fatalf("%v, want the user refused", err)
	}
	if _, err := os.Stat("bad"); !os.IsNotExist(err) {
		t.Fatalf("a refused write made its folder: %v", err)
	}
}

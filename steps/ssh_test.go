package steps

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/sshca"
	"ztwizard/steps/testenv"
)

// Where the real-component tests find OpenSSH. sshd must be started by its
// absolute path.
const (
	sshdBin      = "/usr/sbin/sshd"
	sshBin       = "/usr/bin/ssh"
	sshKeygenBin = "/usr/bin/ssh-keygen"
)

// sshTestCA is a CA key made from a fixed seed, so rendered files are stable.
type sshTestCA struct {
	key crypto.Signer
	pub ssh.PublicKey
}

func newSSHTestCA(t testing.TB, seed byte) sshTestCA {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return sshTestCA{key: key, pub: pub}
}

func (c sshTestCA) line() []byte { return []byte(sshca.PublicKeyLine(c.pub, "")) }

// sshTestSecrets returns secrets for the example site with fixed CA keys.
func sshTestSecrets(t testing.TB, site *Site) (*Secrets, sshTestCA, sshTestCA) {
	t.Helper()
	userCA, hostCA := newSSHTestCA(t, 1), newSSHTestCA(t, 2)
	addrs, err := site.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Secrets{SSHUserCA: userCA.line(), SSHHostCA: hostCA.line(), Addresses: addrs}, userCA, hostCA
}

// sshTestHostCert signs a fresh host key with ca for principals and returns
// the private key and the certificate line.
func sshTestHostCert(t testing.TB, ca crypto.Signer, principals []string, certType uint32) (ed25519.PrivateKey, []byte) {
	t.Helper()
	key, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	req := sshca.Request{Key: pub, KeyID: "host " + principals[0], Principals: principals, Validity: time.Hour, Serial: 1000}
	var cert *ssh.Certificate
	if certType == ssh.UserCert {
		cert, err = sshca.SignUser(ca, req, time.Now())
	} else {
		cert, err = sshca.SignHost(ca, req, time.Now())
	}
	if err != nil {
		t.Fatal(err)
	}
	return key, []byte(sshca.CertLine(cert, req.KeyID))
}

func sshFileMap(files []File) map[string]File {
	m := make(map[string]File, len(files))
	for _, f := range files {
		m[f.Path] = f
	}
	return m
}

// sshPrincipalLines returns the non-comment lines of a principals file.
func sshPrincipalLines(content []byte) []string {
	var out []string
	for l := range strings.Lines(string(content)) {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestSSHFiles(t *testing.T) {
	base := []string{
		SSHPrincipalsDir + "/devops",
		SSHPrincipalsDir + "/root",
		SSHDropInPath,
		SSHKRLPath,
		SSHUserCAPath,
		SSHKnownHostsPath,
	}
	withCert := slices.Clone(base)
	withCert = slices.Insert(withCert, 2, SSHHostCertPath)
	tests := []struct {
		name       string
		node       string
		edit       func(*Site)
		hostCert   bool
		krl        *sshca.KRL
		wantPaths  []string
		wantUsers  map[string]string // account -> "users" comment
		wantHosts  []string          // known_hosts patterns
		wantDirect []string          // directives that must be in the drop-in
		wantMatch  string            // the drop-in's Match blocks, "" for none
	}{
		{
			name:      "example db, no host certificate",
			node:      "db",
			wantPaths: base,
			wantUsers: map[string]string{"root": "alice", "devops": "alice"},
			wantHosts: []string{"db", "10.100.0.1", "192.168.1.100", "web", "10.100.0.2", "192.168.1.50"},
		},
		{
			name:      "example web with host certificate and a KRL",
			node:      "web",
			hostCert:  true,
			krl:       &sshca.KRL{Version: 3, Comment: "test", Certs: []sshca.CertRevocations{{Serials: []uint64{7}}}},
			wantPaths: withCert,
			wantUsers: map[string]string{"root": "alice", "devops": "alice"},
			wantHosts: []string{"db", "10.100.0.1", "192.168.1.100", "web", "10.100.0.2", "192.168.1.50"},
		},
		{
			name: "users sharing accounts",
			node: "db",
			edit: func(s *Site) {
				s.SSH.Users = []SSHUser{
					{Name: "carol", Principals: []string{"deploy", "devops"}},
					{Name: "alice", Principals: []string{"root", "devops"}},
					{Name: "bob", Principals: []string{"devops", "devops"}},
					{Name: "dave", Principals: []string{"root"}},
				}
			},
			wantPaths: []string{
				SSHPrincipalsDir + "/deploy",
				SSHPrincipalsDir + "/devops",
				SSHPrincipalsDir + "/root",
				SSHDropInPath, SSHKRLPath, SSHUserCAPath, SSHKnownHostsPath,
			},
			wantUsers: map[string]string{"deploy": "carol", "devops": "alice, bob, carol", "root": "alice, dave"},
			wantHosts: []string{"db", "10.100.0.1", "192.168.1.100", "web", "10.100.0.2", "192.168.1.50"},
		},
		{
			name: "no users: no principals files, nobody logs in",
			node: "db",
			edit: func(s *Site) { s.SSH.Users = nil },
			wantPaths: []string{
				SSHDropInPath, SSHKRLPath, SSHUserCAPath, SSHKnownHostsPath,
			},
			wantUsers: map[string]string{},
			wantHosts: []string{"db", "10.100.0.1", "192.168.1.100", "web", "10.100.0.2", "192.168.1.50"},
		},
		{
			name: "node without endpoint, address allocated",
			node: "web",
			edit: func(s *Site) {
				s.Nodes[1].Endpoint = ""
				s.Nodes[1].Address = ""
			},
			wantPaths: base,
			wantUsers: map[string]string{"root": "alice", "devops": "alice"},
			wantHosts: []string{"db", "10.100.0.1", "192.168.1.100", "web", "10.100.0.2"},
		},
		{
			name: "forwarding granted per account",
			node: "db",
			edit: func(s *Site) {
				s.SSH.Users = []SSHUser{
					{Name: "carol", Principals: []string{"deploy", "devops"}, Forwarding: []string{"port"}},
					{Name: "alice", Principals: []string{"root", "devops"}},
					{Name: "bob", Principals: []string{"devops"}, Forwarding: []string{"agent", "port"}},
				}
			},
			wantPaths: []string{
				SSHPrincipalsDir + "/deploy",
				SSHPrincipalsDir + "/devops",
				SSHPrincipalsDir + "/root",
				SSHDropInPath, SSHKRLPath, SSHUserCAPath, SSHKnownHostsPath,
			},
			wantUsers: map[string]string{"deploy": "carol", "devops": "alice, bob, carol", "root": "alice"},
			wantHosts: []string{"db", "10.100.0.1", "192.168.1.100", "web", "10.100.0.2", "192.168.1.50"},
			wantMatch: "Match User deploy\n    AllowTcpForwarding yes\n" +
				"Match User devops\n    AllowAgentForwarding yes\n    AllowTcpForwarding yes\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			site := Example()
			if tc.edit != nil {
				tc.edit(site)
			}
			sec, _, hostCA := sshTestSecrets(t, site)
			if tc.hostCert {
				_, sec.HostCert = sshTestHostCert(t, hostCA.key, []string{tc.node, "127.0.0.1"}, ssh.HostCert)
			}
			if tc.krl != nil {
				sec.KRL = tc.krl.Marshal()
			}
			files, err := SSHFiles(site, tc.node, sec)
			if err != nil {
				t.Fatal(err)
			}
			var paths []string
			for _, f := range files {
				paths = append(paths, f.Path)
				if f.Mode != 0o644 || f.Owner != "" || f.Group != "" {
					t.Errorf("%s: mode %v owner %q group %q, want 0644 root:root", f.Path, f.Mode, f.Owner, f.Group)
				}
				if len(f.Content) == 0 {
					t.Errorf("%s is empty", f.Path)
				}
			}
			if !slices.Equal(paths, tc.wantPaths) {
				t.Fatalf("paths:\n got %q\nwant %q", paths, tc.wantPaths)
			}
			if !slices.IsSorted(paths) {
				t.Errorf("files not sorted by path: %q", paths)
			}
			byPath := sshFileMap(files)

			dropIn := string(byPath[SSHDropInPath].Content)
			for _, d := range []string{
				"TrustedUserCAKeys " + SSHUserCAPath,
				"AuthorizedPrincipalsFile " + SSHPrincipalsDir + "/%u",
				"RevokedKeys " + SSHKRLPath,
				"PasswordAuthentication no",
				"KbdInteractiveAuthentication no",
				"AuthenticationMethods publickey",
				"PubkeyAuthentication yes",
				"AuthorizedKeysFile none",
				"PermitRootLogin prohibit-password",
				"HostKey " + SSHHostKeyPath,
				"HostKeyAlgorithms ssh-ed25519-cert-v01@openssh.com,ssh-ed25519",
				"AllowAgentForwarding no",
				"AllowTcpForwarding no",
				"X11Forwarding no",
				"PermitTunnel no",
			} {
				if !slices.Contains(strings.Split(dropIn, "\n"), d) {
					t.Errorf("drop-in lacks the line %q:\n%s", d, dropIn)
				}
			}
			hasHostCert := strings.Contains(dropIn, "HostCertificate")
			if hasHostCert != tc.hostCert {
				t.Errorf("HostCertificate in drop-in = %v, want %v:\n%s", hasHostCert, tc.hostCert, dropIn)
			}
			if tc.hostCert {
				if !slices.Contains(strings.Split(dropIn, "\n"), "HostCertificate "+SSHHostCertPath) {
					t.Errorf("drop-in lacks HostCertificate %s", SSHHostCertPath)
				}
				if got := byPath[SSHHostCertPath].Content; !bytes.Equal(got, sec.HostCert) {
					t.Errorf("host certificate file = %q, want %q", got, sec.HostCert)
				}
			}
			var match strings.Builder
			inMatch := false
			for l := range strings.Lines(dropIn) {
				inMatch = inMatch || strings.HasPrefix(l, "Match ")
				if inMatch && !strings.HasPrefix(l, "#") && strings.TrimSpace(l) != "" {
					match.WriteString(l)
				}
			}
			if match.String() != tc.wantMatch {
				t.Errorf("Match blocks:\n%s\nwant:\n%s", match.String(), tc.wantMatch)
			}
			if !strings.Contains(dropIn, "sshd keeps the first value") {
				t.Errorf("drop-in does not explain why it wins:\n%s", dropIn)
			}

			if got := byPath[SSHUserCAPath].Content; !bytes.Equal(got, sec.SSHUserCA) {
				t.Errorf("user CA file = %q, want %q", got, sec.SSHUserCA)
			}
			wantKRL := sec.KRL
			if wantKRL == nil {
				wantKRL = (&sshca.KRL{}).Marshal()
			}
			if got := byPath[SSHKRLPath].Content; !bytes.Equal(got, wantKRL) {
				t.Errorf("KRL = %x, want %x", got, wantKRL)
			}

			gotUsers := map[string]string{}
			for _, f := range files {
				account, ok := strings.CutPrefix(f.Path, SSHPrincipalsDir+"/")
				if !ok {
					continue
				}
				if lines := sshPrincipalLines(f.Content); !slices.Equal(lines, []string{account}) {
					t.Errorf("%s accepts %q, want only %q", f.Path, lines, account)
				}
				_, users, _ := strings.Cut(string(f.Content), "given this account: ")
				users, _, _ = strings.Cut(users, ".\n")
				gotUsers[account] = users
			}
			if !reflect.DeepEqual(gotUsers, tc.wantUsers) {
				t.Errorf("principals files: got %v, want %v", gotUsers, tc.wantUsers)
			}

			wantKnown := sshca.KnownHostsLine(hostCA.pub, tc.wantHosts)
			known := string(byPath[SSHKnownHostsPath].Content)
			var entries []string
			for l := range strings.Lines(known) {
				if !strings.HasPrefix(l, "#") {
					entries = append(entries, l)
				}
			}
			if !slices.Equal(entries, []string{wantKnown}) {
				t.Errorf("known_hosts entries:\n got %q\nwant %q", entries, wantKnown)
			}
		})
	}
}

func TestSSHFilesDeterministic(t *testing.T) {
	site := Example()
	site.SSH.Users = []SSHUser{
		{Name: "alice", Principals: []string{"root", "devops"}},
		{Name: "bob", Principals: []string{"devops", "deploy"}},
	}
	sec, _, hostCA := sshTestSecrets(t, site)
	_, sec.HostCert = sshTestHostCert(t, hostCA.key, []string{"db"}, ssh.HostCert)
	first, err := SSHFiles(site, "db", sec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := SSHFiles(site, "db", sec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, again) {
		t.Error("two runs with the same inputs differ")
	}

	// The order users and their principals are listed in does not matter.
	shuffled := Example()
	shuffled.SSH.Users = []SSHUser{
		{Name: "bob", Principals: []string{"deploy", "devops"}},
		{Name: "alice", Principals: []string{"devops", "root"}},
	}
	other, err := SSHFiles(shuffled, "db", sec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, other) {
		t.Error("reordering users and principals changes the files")
	}

	// Inputs are not modified, even when a line needs its newline fixed.
	sec.SSHUserCA = append(bytes.TrimSuffix(slices.Clone(sec.SSHUserCA), []byte("\n")), '\r', '\n')
	before := slices.Clone(sec.SSHUserCA)
	files, err := SSHFiles(site, "db", sec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sec.SSHUserCA, before) {
		t.Errorf("SSHFiles changed sec.SSHUserCA to %q", sec.SSHUserCA)
	}
	if got := sshFileMap(files)[SSHUserCAPath].Content; !bytes.HasSuffix(got, []byte("\n")) || bytes.Contains(got, []byte("\r")) {
		t.Errorf("user CA file = %q, want one line ending in \\n", got)
	}
}

// TestSSHFilesGolden compares the rendered files of the example's db node
// with testdata/sshd/db.golden (go test ./steps -run TestSSHFilesGolden
// -update rewrites it). Binary and per-run content is summarised.
func TestSSHFilesGolden(t *testing.T) {
	site := Example()
	sec, _, _ := sshTestSecrets(t, site)
	files, err := SSHFiles(site, "db", sec)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "-- %s (%04o) --\n", f.Path, f.Mode)
		if f.Path == SSHKRLPath {
			fmt.Fprintf(&b, "(binary KRL, %d bytes)\n", len(f.Content))
			continue
		}
		b.Write(f.Content)
	}
	golden := filepath.Join("testdata", "sshd", "db.golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./steps -run TestSSHFilesGolden -update)", err)
	}
	if b.String() != string(want) {
		t.Errorf("rendered files differ from %s (-update rewrites it):\n%s", golden, b.String())
	}
}

func TestSSHFilesErrors(t *testing.T) {
	site := Example()
	good, _, hostCA := sshTestSecrets(t, site)
	otherCA := newSSHTestCA(t, 9)
	_, hostCertDB := sshTestHostCert(t, hostCA.key, []string{"db"}, ssh.HostCert)
	_, foreignCert := sshTestHostCert(t, otherCA.key, []string{"db"}, ssh.HostCert)
	_, userCert := sshTestHostCert(t, hostCA.key, []string{"root"}, ssh.UserCert)
	_, webCert := sshTestHostCert(t, hostCA.key, []string{"web", "10.100.0.2"}, ssh.HostCert)

	tests := []struct {
		name string
		node string
		site func(*Site) *Site
		sec  func(Secrets) *Secrets
		want string
	}{
		{name: "unknown node", node: "dbb", want: "not a node of the site"},
		{name: "no site", node: "db", site: func(*Site) *Site { return nil }, want: "no site"},
		{name: "no secrets", node: "db", sec: func(Secrets) *Secrets { return nil }, want: "no secrets"},
		{name: "no user CA", node: "db", sec: func(s Secrets) *Secrets { s.SSHUserCA = nil; return &s }, want: "user CA: missing public key"},
		{name: "user CA not a key", node: "db", sec: func(s Secrets) *Secrets { s.SSHUserCA = []byte("ssh-ed25519 nope\n"); return &s }, want: "user CA: not an SSH public key"},
		{name: "user CA is a certificate", node: "db", sec: func(s Secrets) *Secrets { s.SSHUserCA = userCert; return &s }, want: "user CA: is a certificate"},
		{name: "three user CA lines", node: "db", sec: func(s Secrets) *Secrets {
			s.SSHUserCA = append(append(slices.Clone(s.SSHUserCA), otherCA.line()...), hostCA.line()...)
			return &s
		}, want: "user CA: more than two key lines"},
		{name: "no host CA", node: "db", sec: func(s Secrets) *Secrets { s.SSHHostCA = nil; return &s }, want: "host CA: missing public key"},
		{name: "KRL not a KRL", node: "db", sec: func(s Secrets) *Secrets { s.KRL = []byte("revoked\n"); return &s }, want: "KRL: not an OpenSSH binary KRL"},
		{name: "host cert from another CA", node: "db", sec: func(s Secrets) *Secrets { s.HostCert = foreignCert; return &s }, want: "not by the site's host CA"},
		{name: "host cert is a user cert", node: "db", sec: func(s Secrets) *Secrets { s.HostCert = userCert; return &s }, want: "a user certificate, not a host certificate"},
		{name: "host cert is a plain key", node: "db", sec: func(s Secrets) *Secrets { s.HostCert = hostCA.line(); return &s }, want: "a plain public key"},
		{name: "host cert of another node", node: "db", sec: func(s Secrets) *Secrets { s.HostCert = webCert; return &s }, want: "not the node"},
		{name: "bad principal", node: "db", site: func(s *Site) *Site {
			s.SSH.Users[0].Principals = []string{"root", "../../shadow"}
			return s
		}, want: "ssh.users[0].principals[1]"},
		{name: "principal with a comma", node: "db", site: func(s *Site) *Site {
			s.SSH.Users[0].Principals = []string{"root,devops"}
			return s
		}, want: "comma"},
		{name: "unknown forwarding", node: "db", site: func(s *Site) *Site {
			s.SSH.Users[0].Forwarding = []string{"x11"}
			return s
		}, want: `ssh.users[0].forwarding[0]: forwarding "x11" is not one of`},
		{name: "user name breaks a line", node: "db", site: func(s *Site) *Site {
			s.SSH.Users[0].Name = "alice\nMatch all"
			s.SSH.Users[0].Forwarding = []string{"agent"}
			return s
		}, want: "ssh.users[0].name"},
		{name: "site name breaks a line", node: "db", site: func(s *Site) *Site {
			s.Site = "x\nPasswordAuthentication yes"
			return s
		}, want: "site:"},
		{name: "bad endpoint", node: "db", site: func(s *Site) *Site {
			s.Nodes[1].Endpoint = "no-port"
			return s
		}, want: `known_hosts: node "web": endpoint "no-port"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Example()
			if tc.site != nil {
				s = tc.site(s)
			}
			sec := good
			if tc.sec != nil {
				sec = tc.sec(*good)
			}
			files, err := SSHFiles(s, tc.node, sec)
			if err == nil {
				t.Fatalf("no error; %d files", len(files))
			}
			prefix := fmt.Sprintf("ssh: node %q: ", tc.node)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q...%q", err, prefix, tc.want)
			}
		})
	}

	// The good secrets with the good host certificate do work.
	ok := *good
	ok.HostCert = hostCertDB
	if _, err := SSHFiles(site, "db", &ok); err != nil {
		t.Errorf("good secrets: %v", err)
	}
}

// sshdRun runs an OpenSSH program with a time limit and returns its
// stdout, stderr and error; the test fails if the program times out.
func sshdRun(t *testing.T, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, errOut, err := testenv.RunCmd(t.Context(), 30*time.Second, cmd)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	return out, errOut, err
}

// sshdWriteFiles writes files under root as they would land under /, the
// drop-in's /etc paths rewritten to point under root.
func sshdWriteFiles(t *testing.T, root string, files []File) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		content := f.Content
		if f.Path == SSHDropInPath {
			content = bytes.ReplaceAll(content, []byte(" /etc/"), []byte(" "+root+"/etc/"))
		}
		if err := os.WriteFile(p, content, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
}

// sshdUserKey makes a user key in its own folder, and a certificate for it
// when req is not nil, and returns the key's path.
func sshdUserKey(t *testing.T, name string, ca crypto.Signer, req *sshca.Request, now time.Time) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pem, err := sshca.EncodePrivateKey(key, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", []byte(sshca.PublicKeyLine(pub, name)), 0o644); err != nil {
		t.Fatal(err)
	}
	if req != nil {
		r := *req
		r.Key = pub
		cert, err := sshca.SignUser(ca, r, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+"-cert.pub", []byte(sshca.CertLine(cert, r.KeyID)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// sshdMainConf is a minimal sshd_config that includes the rendered drop-in
// first, as Debian's does, then sets what a test instance needs. The lines
// after the Include try to loosen what the drop-in sets; sshd keeps the
// drop-in's values.
func sshdMainConf(root string, port int) string {
	return fmt.Sprintf(`Include %[1]s%[2]s
Port %[3]d
ListenAddress 127.0.0.1
PidFile %[1]s/sshd.pid
UsePAM no
# The temporary folder lives under the world-writable /tmp, which StrictModes
# would reject for the principals files.
StrictModes no
LogLevel VERBOSE
# Everything below is overridden by the drop-in.
AuthorizedKeysFile %[1]s/authorized_keys/%%u
PasswordAuthentication yes
KbdInteractiveAuthentication yes
PermitRootLogin yes
PubkeyAuthentication no
`, root, SSHDropInPath, port)
}

// startSSHD runs sshd -D -e with conf until the test ends (see
// testenv.Start) and returns it once it accepts connections on port; its
// output is its log.
func startSSHD(t *testing.T, conf string, port int) *testenv.Proc {
	t.Helper()
	sshd := testenv.Start(t, exec.Command(sshdBin, "-D", "-e", "-f", conf), testenv.ProcOptions{})
	if err := sshd.WaitReady(10*time.Second, testenv.Listening(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))); err != nil {
		t.Fatal(err)
	}
	return sshd
}

// sshdLogin is one ssh client run against the test sshd.
type sshdLogin struct {
	key        string // private key; its -cert.pub is offered when it exists
	user       string
	knownHosts string
	alias      string // HostKeyAlias: the name the client checks the host as
}

// run runs ssh ... USER@127.0.0.1 echo ztwizard-ok and returns stdout,
// stderr and the exit error.
func (l sshdLogin) run(t *testing.T, home string, port int) (string, string, error) {
	t.Helper()
	args := []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(port),
		"-i", l.key,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + l.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "HostKeyAlias=" + l.alias,
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=5",
		"-o", "PreferredAuthentications=publickey,keyboard-interactive,password",
	}
	if _, err := os.Stat(l.key + "-cert.pub"); err == nil {
		args = append(args, "-o", "CertificateFile="+l.key+"-cert.pub")
	}
	args = append(args, l.user+"@127.0.0.1", "echo", "ztwizard-ok")
	return sshdRun(t, []string{"HOME=" + home, "SSH_AUTH_SOCK="}, sshBin, args...)
}

// sshdWaitLog waits a little for want to appear in the part of the log
// after offset: sshd may log after the client has gone.
func sshdWaitLog(sshd *testenv.Proc, offset int, want string) bool {
	deadline := time.Now().Add(3 * time.Second)
	for {
		if s := sshd.Output(); len(s) >= offset && strings.Contains(s[offset:], want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSSHDRealLogin renders the files for the example's db node, runs a
// real sshd with them and logs in with a real ssh client: only a valid,
// unrevoked certificate for the right principal gets in, and the client
// trusts the host through the @cert-authority line alone.
func TestSSHDRealLogin(t *testing.T) {
	testenv.Need(t, sshdBin, sshBin, sshKeygenBin)
	testenv.NeedRoot(t) // it runs sshd and logs in as root
	// sshd, even sshd -t, needs its privilege separation folder.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
	now := time.Now()
	site := Example()
	const node = "db"

	userCA, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	hostCAKey, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rogueCA, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherHostCAKey, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubLine := func(k ed25519.PrivateKey) []byte {
		p, err := ssh.NewPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return []byte(sshca.PublicKeyLine(p, ""))
	}
	userCAPub, _, _, _, err := ssh.ParseAuthorizedKey(pubLine(userCA))
	if err != nil {
		t.Fatal(err)
	}

	const revokedSerial = 666
	hostKey, hostCert := sshTestHostCert(t, hostCAKey, []string{node, "127.0.0.1"}, ssh.HostCert)
	addrs, err := site.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	krl := &sshca.KRL{Version: 1, Generated: now, Comment: "test",
		Certs: []sshca.CertRevocations{{CA: userCAPub, Serials: []uint64{revokedSerial}}}}
	sec := &Secrets{
		SSHUserCA: pubLine(userCA),
		SSHHostCA: pubLine(hostCAKey),
		KRL:       krl.Marshal(),
		HostCert:  hostCert,
		Addresses: addrs,
	}
	files, err := SSHFiles(site, node, sec)
	if err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	sshdWriteFiles(t, root, files)
	hostPEM, err := sshca.EncodePrivateKey(hostKey, node, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, SSHHostKeyPath), hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(root, SSHKnownHostsPath)

	// A known_hosts file rendered with another host CA.
	otherSec := *sec
	otherSec.SSHHostCA = pubLine(otherHostCAKey)
	otherSec.HostCert = nil
	otherFiles, err := SSHFiles(site, node, &otherSec)
	if err != nil {
		t.Fatal(err)
	}
	wrongKnownHosts := filepath.Join(root, "wrong_known_hosts")
	if err := os.WriteFile(wrongKnownHosts, sshFileMap(otherFiles)[SSHKnownHostsPath].Content, 0o644); err != nil {
		t.Fatal(err)
	}

	valid := sshdUserKey(t, "valid", userCA, &sshca.Request{KeyID: "alice", Principals: []string{"root", "devops"}, Validity: 4 * time.Hour, Serial: 1}, now)
	expired := sshdUserKey(t, "expired", userCA, &sshca.Request{KeyID: "alice-old", Principals: []string{"root"}, Validity: 4 * time.Hour, Serial: 2}, now.Add(-10*time.Hour))
	notYet := sshdUserKey(t, "not-yet", userCA, &sshca.Request{KeyID: "alice-future", Principals: []string{"root"}, Validity: 4 * time.Hour, Serial: 3}, now.Add(2*time.Hour))
	devops := sshdUserKey(t, "devops", userCA, &sshca.Request{KeyID: "alice-devops", Principals: []string{"devops"}, Validity: 4 * time.Hour, Serial: 4}, now)
	revoked := sshdUserKey(t, "revoked", userCA, &sshca.Request{KeyID: "alice-lost-laptop", Principals: []string{"root"}, Validity: 4 * time.Hour, Serial: revokedSerial}, now)
	rogue := sshdUserKey(t, "rogue", rogueCA, &sshca.Request{KeyID: "mallory", Principals: []string{"root"}, Validity: 4 * time.Hour, Serial: 5}, now)
	unsigned := sshdUserKey(t, "unsigned", nil, nil, now)

	// The unsigned key is planted where the main config's AuthorizedKeysFile
	// points: the drop-in's "AuthorizedKeysFile none" must keep it unread.
	planted, err := os.ReadFile(unsigned + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "authorized_keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "authorized_keys", "root"), planted, 0o600); err != nil {
		t.Fatal(err)
	}

	// ssh-keygen reads the rendered KRL and known_hosts as intended.
	if out, _, _ := sshdRun(t, nil, sshKeygenBin, "-Q", "-f", filepath.Join(root, SSHKRLPath), revoked+"-cert.pub"); !strings.Contains(out, "REVOKED") {
		t.Errorf("ssh-keygen -Q: the revoked certificate is not in the KRL: %q", out)
	}
	if out, errOut, err := sshdRun(t, nil, sshKeygenBin, "-Q", "-f", filepath.Join(root, SSHKRLPath), valid+"-cert.pub"); err != nil || strings.Contains(out, "REVOKED") {
		t.Errorf("ssh-keygen -Q: the valid certificate: %v %q %q", err, out, errOut)
	}
	for _, host := range []string{node, "10.100.0.1", "192.168.1.100", "web", "10.100.0.2", "192.168.1.50"} {
		if out, errOut, err := sshdRun(t, nil, sshKeygenBin, "-F", host, "-f", knownHosts); err != nil || !strings.Contains(out, "@cert-authority") {
			t.Errorf("ssh-keygen -F %s: %v %q %q", host, err, out, errOut)
		}
	}

	// The sshd_config is checked, its effective values read back, then run.
	port := testenv.FreePort(t)
	conf := filepath.Join(root, "sshd_config")
	if err := os.WriteFile(conf, []byte(sshdMainConf(root, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := sshdRun(t, nil, sshdBin, "-t", "-f", conf); err != nil {
		t.Fatalf("sshd -t: %v\n%s%s\n%s", err, out, errOut, sshdMainConf(root, port))
	}
	sshdCheckEffective(t, conf, root)
	sshd := startSSHD(t, conf, port)

	home := t.TempDir()
	tests := []struct {
		name    string
		login   sshdLogin
		ok      bool
		client  string   // in ssh's stderr when refused
		sshdLog []string // in sshd's log
	}{
		{name: "valid certificate for root", ok: true,
			sshdLog: []string{"Accepted publickey for root from 127.0.0.1", "ID alice (serial 1)"},
			login:   sshdLogin{key: valid, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "expired certificate", client: "Permission denied",
			sshdLog: []string{"Certificate invalid: expired"},
			login:   sshdLogin{key: expired, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "certificate not yet valid", client: "Permission denied",
			sshdLog: []string{"Certificate invalid: not yet valid"},
			login:   sshdLogin{key: notYet, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "wrong principal", client: "Permission denied",
			sshdLog: []string{"Certificate does not contain an authorized principal"},
			login:   sshdLogin{key: devops, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "revoked certificate", client: "Permission denied",
			sshdLog: []string{"revoked by file " + filepath.Join(root, SSHKRLPath)},
			login:   sshdLogin{key: revoked, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "certificate from another CA", client: "Permission denied",
			sshdLog: []string{"Failed publickey for root from 127.0.0.1", "ID mallory (serial 5)"},
			login:   sshdLogin{key: rogue, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "unsigned key in authorized_keys", client: "Permission denied",
			sshdLog: []string{"Failed publickey for root from 127.0.0.1"},
			login:   sshdLogin{key: unsigned, user: "root", knownHosts: knownHosts, alias: node}},
		{name: "known_hosts with another host CA", client: "Host key verification failed",
			login: sshdLogin{key: valid, user: "root", knownHosts: wrongKnownHosts, alias: node}},
		{name: "host certificate does not name the alias", client: "Host key verification failed",
			login: sshdLogin{key: valid, user: "root", knownHosts: knownHosts, alias: "web"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offset := len(sshd.Output())
			out, errOut, err := tc.login.run(t, home, port)
			defer func() { t.Logf("ssh: %v %q\n%s\nsshd:\n%s", err, out, errOut, sshd.Output()[offset:]) }()
			if tc.ok {
				if err != nil || out != "ztwizard-ok\n" {
					t.Fatalf("login refused: %v\nstdout %q\nstderr %s", err, out, errOut)
				}
			} else {
				if err == nil || strings.Contains(out, "ztwizard-ok") {
					t.Fatalf("login allowed: stdout %q\nstderr %s", out, errOut)
				}
				if _, isExit := errors.AsType[*exec.ExitError](err); !isExit {
					t.Fatalf("ssh did not run: %v", err)
				}
				if !strings.Contains(errOut, tc.client) {
					t.Errorf("ssh stderr lacks %q:\n%s", tc.client, errOut)
				}
			}
			for _, want := range tc.sshdLog {
				if !sshdWaitLog(sshd, offset, want) {
					t.Errorf("sshd log lacks %q", want)
				}
			}
			if !tc.ok && strings.Contains(sshd.Output()[offset:], "Accepted publickey") {
				t.Errorf("sshd accepted a key")
			}
		})
	}
}

// sshdCheckEffective asks sshd for its effective configuration: the
// drop-in's values win over the main file's later, looser ones.
func sshdCheckEffective(t *testing.T, conf, root string) {
	t.Helper()
	out, errOut, err := sshdRun(t, nil, sshdBin, "-T", "-f", conf)
	if err != nil {
		t.Fatalf("sshd -T: %v\n%s", err, errOut)
	}
	got := map[string]string{}
	for l := range strings.Lines(out) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		got[k] = v
	}
	want := map[string]string{
		"trustedusercakeys":            root + SSHUserCAPath,
		"authorizedprincipalsfile":     root + SSHPrincipalsDir + "/%u",
		"revokedkeys":                  root + SSHKRLPath,
		"authorizedkeysfile":           "none",
		"passwordauthentication":       "no",
		"kbdinteractiveauthentication": "no",
		"pubkeyauthentication":         "yes",
		"authenticationmethods":        "publickey",
		"permitrootlogin":              "without-password",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("sshd -T: %s = %q, want %q", k, got[k], v)
		}
	}
}

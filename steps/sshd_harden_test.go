package steps

import (
	"bufio"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"ztwizard/steps/sshca"
	"ztwizard/steps/testenv"
)

// debianSSHDConfig is Debian's main sshd configuration, which includes the
// drop-in folder at its top.
const debianSSHDConfig = "/etc/ssh/sshd_config"

// The algorithm sets the drop-in allows, as sshd -T prints them.
const (
	hardenedKex     = "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org"
	hardenedCiphers = "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes128-ctr"
	hardenedMACs    = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com"
	hardenedHostKey = "ssh-ed25519-cert-v01@openssh.com,ssh-ed25519"
)

// sshdDebianConf returns Debian's sshd_config with its Include line pointing
// at the rendered drop-in under root, after the few lines a test instance
// needs (sshd keeps the first value, and the drop-in sets none of these).
func sshdDebianConf(t *testing.T, root string, port int) string {
	t.Helper()
	debian, err := os.ReadFile(debianSSHDConfig)
	if err != nil {
		t.Fatalf("Debian's sshd_config (openssh-server): %v", err)
	}
	const include = "Include /etc/ssh/sshd_config.d/*.conf\n"
	if !strings.Contains(string(debian), include) {
		t.Fatalf("%s has no %q line", debianSSHDConfig, strings.TrimSpace(include))
	}
	merged := strings.Replace(string(debian), include, "Include "+root+SSHDropInPath+"\n", 1)
	return fmt.Sprintf(`# Test instance: loopback port, own pid file, no PAM (not root's real
# session), and StrictModes off for files under the world-writable /tmp.
Port %d
ListenAddress 127.0.0.1
PidFile %s/sshd.pid
UsePAM no
StrictModes no
LogLevel VERBOSE
# Debian's sshd_config follows, its Include pointing at the drop-in.
%s`, port, root, merged)
}

// sshdHardenedHost renders site's SSH files for node db into a fresh root
// with a host key and certificate, writes the merged configuration and
// returns root, the configuration's path and the user CA.
func sshdHardenedHost(t *testing.T, site *Site, port int) (root, conf string, userCA ed25519.PrivateKey) {
	t.Helper()
	userCA, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	hostCA, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	line := func(k ed25519.PrivateKey) []byte {
		p, err := ssh.NewPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return []byte(sshca.PublicKeyLine(p, ""))
	}
	hostKey, hostCert := sshTestHostCert(t, hostCA, []string{"db", "127.0.0.1"}, ssh.HostCert)
	addrs, err := site.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := SSHFiles(site, "db", &Secrets{SSHUserCA: line(userCA), SSHHostCA: line(hostCA), HostCert: hostCert, Addresses: addrs})
	if err != nil {
		t.Fatal(err)
	}
	root = t.TempDir()
	sshdWriteFiles(t, root, files)
	pem, err := sshca.EncodePrivateKey(hostKey, "db", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, SSHHostKeyPath), pem, 0o600); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(root, "sshd_config")
	if err := os.WriteFile(conf, []byte(sshdDebianConf(t, root, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := sshdRun(t, nil, sshdBin, "-t", "-f", conf); err != nil {
		t.Fatalf("sshd -t: %v\n%s%s", err, out, errOut)
	}
	return root, conf, userCA
}

// sshdEffective returns sshd -T's keywords and values for the connection
// spec (-C) if any; repeated keywords keep every value in order.
func sshdEffective(t *testing.T, conf, spec string) map[string][]string {
	t.Helper()
	args := []string{"-T", "-f", conf}
	if spec != "" {
		args = append(args, "-C", spec)
	}
	out, errOut, err := sshdRun(t, nil, sshdBin, args...)
	if err != nil {
		t.Fatalf("sshd -T: %v\n%s", err, errOut)
	}
	got := map[string][]string{}
	for l := range strings.Lines(out) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		got[k] = append(got[k], v)
	}
	return got
}

// sshdUserCert makes a key with a certificate as ztwizard issues it for the
// site user (its principals and forwarding), or with forwarding given.
func sshdUserCert(t *testing.T, name string, ca ed25519.PrivateKey, principals, forwarding []string) string {
	t.Helper()
	return sshdUserKey(t, name, ca, &sshca.Request{KeyID: name, Principals: principals, Validity: time.Hour, Serial: 10, Forwarding: forwarding}, time.Now())
}

// sshdClientArgs are the ssh client options of every run against the test
// sshd: no user configuration, no agent, and no host key check (the
// algorithms and the forwarding rules are under test here, the host CA in
// TestSSHDRealLogin).
func sshdClientArgs(port int, key string) []string {
	return sshdAgentArgs(port, key, "none")
}

// sshdAgentArgs is sshdClientArgs with the agent at socket identityAgent.
func sshdAgentArgs(port int, key, identityAgent string) []string {
	return []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(port),
		"-i", key,
		"-o", "CertificateFile=" + key + "-cert.pub",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=" + identityAgent,
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=5",
	}
}

// TestSSHDHardened runs a real sshd on loopback with Debian's sshd_config
// and the rendered drop-in: sshd -T lists exactly the hardened algorithm
// sets, the Ed25519 host key alone, the startup limits and forwarding off;
// a real ssh client forced to offer only an algorithm the drop-in removed
// cannot connect, while the default client logs in; a default user's -L
// tunnel and agent forwarding are refused, even with a certificate that
// carries the forwarding extensions.
func TestSSHDHardened(t *testing.T) {
	testenv.Need(t, sshdBin, sshBin, sshKeygenBin)
	testenv.NeedRoot(t) // it runs sshd and logs in as root
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
	port := testenv.FreePort(t)
	root, conf, userCA := sshdHardenedHost(t, Example(), port)

	got := sshdEffective(t, conf, "")
	want := map[string][]string{
		"kexalgorithms":              {hardenedKex},
		"ciphers":                    {hardenedCiphers},
		"macs":                       {hardenedMACs},
		"hostkeyalgorithms":          {hardenedHostKey},
		"hostkey":                    {root + SSHHostKeyPath},
		"hostcertificate":            {root + SSHHostCertPath},
		"persourcemaxstartups":       {"3"},
		"maxstartups":                {"10:30:60"},
		"logingracetime":             {"20"},
		"allowagentforwarding":       {"no"},
		"allowtcpforwarding":         {"no"},
		"allowstreamlocalforwarding": {"no"},
		"x11forwarding":              {"no"}, // Debian's sshd_config says yes
		"permittunnel":               {"no"},
		"passwordauthentication":     {"no"},
		"authorizedkeysfile":         {"none"},
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("sshd -T: %s = %q, want %q", k, got[k], v)
		}
	}
	// Without a Match for root, root gets the same.
	if got := sshdEffective(t, conf, "user=root,host=localhost,addr=127.0.0.1"); got["allowtcpforwarding"][0] != "no" || got["allowagentforwarding"][0] != "no" {
		t.Errorf("sshd -T -C user=root: tcp %q agent %q forwarding, want no", got["allowtcpforwarding"], got["allowagentforwarding"])
	}

	sshd := startSSHD(t, conf, port)
	home := t.TempDir()
	alice, _ := Example().User("alice")
	key := sshdUserCert(t, "alice", userCA, alice.Principals, alice.Forwarding)
	run := func(opts ...string) (string, string, error) {
		args := append(sshdClientArgs(port, key), opts...)
		args = append(args, "root@127.0.0.1", "echo", "ztwizard-ok")
		return sshdRun(t, []string{"HOME=" + home, "SSH_AUTH_SOCK="}, sshBin, args...)
	}
	if out, errOut, err := run(); err != nil || out != "ztwizard-ok\n" {
		t.Fatalf("default client refused: %v %q\n%s\n%s", err, out, errOut, sshd.Output())
	}

	// With the default AEAD cipher no MAC is negotiated: the MAC cases
	// force a CTR cipher, whose control case connects.
	tests := []struct {
		name string
		opts []string
		ok   bool
		err  string // in ssh's stderr
	}{
		{name: "kex ecdh-sha2-nistp256", opts: []string{"-o", "KexAlgorithms=ecdh-sha2-nistp256"}, err: "no matching key exchange method"},
		{name: "kex diffie-hellman-group14-sha256", opts: []string{"-o", "KexAlgorithms=diffie-hellman-group14-sha256"}, err: "no matching key exchange method"},
		{name: "kex diffie-hellman-group16-sha512", opts: []string{"-o", "KexAlgorithms=diffie-hellman-group16-sha512"}, err: "no matching key exchange method"},
		{name: "kex sntrup761x25519", opts: []string{"-o", "KexAlgorithms=sntrup761x25519-sha512@openssh.com"}, ok: true},
		{name: "kex curve25519-sha256", opts: []string{"-o", "KexAlgorithms=curve25519-sha256"}, ok: true},
		{name: "mac hmac-sha1", opts: []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha1"}, err: "no matching MAC"},
		{name: "mac hmac-sha2-256 (encrypt-and-MAC)", opts: []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha2-256"}, err: "no matching MAC"},
		{name: "mac umac-64-etm", opts: []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=umac-64-etm@openssh.com"}, err: "no matching MAC"},
		{name: "mac hmac-sha2-512-etm", opts: []string{"-o", "Ciphers=aes128-ctr", "-o", "MACs=hmac-sha2-512-etm@openssh.com"}, ok: true},
		{name: "cipher aes192-ctr", opts: []string{"-o", "Ciphers=aes192-ctr"}, err: "no matching cipher"},
		{name: "cipher aes128-cbc", opts: []string{"-o", "Ciphers=aes128-cbc"}, err: "no matching cipher"},
		{name: "cipher aes256-gcm", opts: []string{"-o", "Ciphers=aes256-gcm@openssh.com"}, ok: true},
		{name: "host key ecdsa-sha2-nistp256", opts: []string{"-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256"}, err: "no matching host key type"},
		{name: "host key rsa-sha2-512", opts: []string{"-o", "HostKeyAlgorithms=rsa-sha2-512"}, err: "no matching host key type"},
		{name: "host key ssh-ed25519", opts: []string{"-o", "HostKeyAlgorithms=ssh-ed25519"}, ok: true},
		{name: "host key ed25519 certificate", opts: []string{"-o", "HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com"}, ok: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(tc.opts...)
			if tc.ok {
				if err != nil || out != "ztwizard-ok\n" {
					t.Fatalf("refused: %v %q\n%s", err, out, errOut)
				}
				return
			}
			if err == nil || strings.Contains(out, "ztwizard-ok") {
				t.Fatalf("connected with %q: %q", tc.opts, out)
			}
			if !strings.Contains(errOut, tc.err) {
				t.Errorf("ssh stderr lacks %q:\n%s", tc.err, errOut)
			}
		})
	}

	// Forwarding: alice's certificate as issued (no forwarding extensions),
	// and one that does carry them: sshd refuses both.
	legacy := sshdUserCert(t, "legacy", userCA, []string{"root"}, []string{sshca.ForwardAgent, sshca.ForwardPort})
	for _, k := range []string{key, legacy} {
		if sshdTunnel(t, home, port, k) {
			t.Errorf("%s: the -L tunnel carried data, want refused", filepath.Base(filepath.Dir(k)))
		}
		if sshdAgentForwarded(t, home, port, k) {
			t.Errorf("%s: the agent was forwarded, want refused", filepath.Base(filepath.Dir(k)))
		}
	}

	// PerSourceMaxStartups: three unauthenticated connections from one
	// address get the banner, the fourth is refused at once (far below
	// MaxStartups' 10; OpenSSH 9.2 says "MaxStartups" for both limits).
	t.Run("per-source startups", func(t *testing.T) {
		offset := len(sshd.Output())
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		banner := func() (net.Conn, string) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			return c, line
		}
		for i := range 3 {
			c, line := banner()
			defer c.Close()
			if !strings.HasPrefix(line, "SSH-2.0-") {
				t.Fatalf("connection %d: %q, want the banner", i+1, line)
			}
		}
		c, line := banner()
		c.Close()
		if line != "Exceeded MaxStartups\r\n" {
			t.Errorf("fourth connection: %q, want it refused", line)
		}
		if !sshdWaitLog(sshd, offset, "drop connection #3 from [127.0.0.1]") {
			t.Errorf("sshd log lacks the drop of the fourth connection:\n%s", sshd.Output()[offset:])
		}
	})
}

// TestSSHDForwardingGranted runs a real sshd for a site whose user ops is
// granted agent and port forwarding: ops's certificate gets the extensions
// and the drop-in a Match block for ops's account, so ops's -L tunnel and
// agent forwarding work; alice, who shares the account without the grant,
// is still refused through her certificate.
func TestSSHDForwardingGranted(t *testing.T) {
	testenv.Need(t, sshdBin, sshBin, sshKeygenBin)
	testenv.NeedRoot(t)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
	site := Example()
	site.SSH.Users = append(site.SSH.Users, SSHUser{Name: "ops", Principals: []string{"root"}, Forwarding: []string{"agent", "port"}})
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	_, conf, userCA := sshdHardenedHost(t, site, port)

	for spec, want := range map[string]string{
		"": "no", "user=root,host=localhost,addr=127.0.0.1": "yes", "user=devops,host=localhost,addr=127.0.0.1": "no",
	} {
		got := sshdEffective(t, conf, spec)
		if got["allowtcpforwarding"][0] != want || got["allowagentforwarding"][0] != want {
			t.Errorf("sshd -T -C %q: tcp %q agent %q forwarding, want %s", spec, got["allowtcpforwarding"], got["allowagentforwarding"], want)
		}
		if got["x11forwarding"][0] != "no" || got["permittunnel"][0] != "no" {
			t.Errorf("sshd -T -C %q: x11 %q tunnel %q, want no", spec, got["x11forwarding"], got["permittunnel"])
		}
	}

	startSSHD(t, conf, port)
	home := t.TempDir()
	keys := map[string]string{}
	for _, name := range []string{"ops", "alice"} {
		u, _ := site.User(name)
		keys[name] = sshdUserCert(t, name, userCA, u.Principals, u.Forwarding)
	}
	if !sshdTunnel(t, home, port, keys["ops"]) {
		t.Error("ops: the -L tunnel carried no data, want it granted")
	}
	if !sshdAgentForwarded(t, home, port, keys["ops"]) {
		t.Error("ops: the agent was not forwarded, want it granted")
	}
	if sshdTunnel(t, home, port, keys["alice"]) {
		t.Error("alice: the -L tunnel carried data, want refused by her certificate")
	}
	if sshdAgentForwarded(t, home, port, keys["alice"]) {
		t.Error("alice: the agent was forwarded, want refused by her certificate")
	}
}

// sshdTunnel logs in as root with key and an -L tunnel to a listener of the
// test, and reports whether a line sent by the listener came through.
func sshdTunnel(t *testing.T, home string, sshdPort int, key string) bool {
	t.Helper()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "through-the-tunnel\n")
			_ = c.Close()
		}
	}()
	local := testenv.FreePort(t)
	args := append(sshdClientArgs(sshdPort, key),
		"-L", fmt.Sprintf("127.0.0.1:%d:%s", local, target.Addr()),
		"root@127.0.0.1", "read", "line")
	// The remote command waits for a line: closing stdin ends the session.
	cmd := exec.Command(sshBin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home, "SSH_AUTH_SOCK=")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	var conn net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(local)), time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the -L listener never came up: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("reading through the tunnel: %v\n%s", err, stderr.String())
	}
	if line == "through-the-tunnel\n" {
		return true
	}
	// Refused by sshd: the client says so.
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(stderr.String(), "administratively prohibited") {
		if time.Now().After(deadline) {
			t.Errorf("no data and no refusal from sshd; ssh stderr:\n%s", stderr.String())
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// sshdAgentForwarded logs in as root with key, forwarding an agent that
// holds one key, and reports whether ssh-add -l on the server lists it.
func sshdAgentForwarded(t *testing.T, home string, sshdPort int, key string) bool {
	t.Helper()
	signer, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: signer, Comment: "forwarded-key"}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	args := append(sshdAgentArgs(sshdPort, key, sock), "-o", "ForwardAgent=yes",
		"root@127.0.0.1", "ssh-add -l; echo rc=$?")
	out, errOut, err := sshdRun(t, []string{"HOME=" + home, "SSH_AUTH_SOCK="}, sshBin, args...)
	if err != nil {
		t.Fatalf("login: %v %q\n%s", err, out, errOut)
	}
	switch {
	case strings.Contains(out, "forwarded-key") && strings.Contains(out, "rc=0"):
		return true
	case strings.Contains(out, "rc=2"): // no agent to connect to
		return false
	}
	t.Logf("ssh-add: %q\n%s", out, errOut)
	t.Fatalf("ssh-add -l on the server: unexpected %q\n%s", out, errOut)
	return false
}

// TestValidateForwarding: ssh.users[].forwarding takes "agent" and "port",
// each once; anything else is an error naming the field and the value.
func TestValidateForwarding(t *testing.T) {
	tests := []struct {
		forwarding []string
		want       string // "" for valid
	}{
		{nil, ""},
		{[]string{"agent"}, ""},
		{[]string{"port", "agent"}, ""},
		{[]string{"x11"}, `ssh.users[0].forwarding[0]: forwarding "x11" is not one of`},
		{[]string{"agent", "Port"}, `ssh.users[0].forwarding[1]: forwarding "Port"`},
		{[]string{"port", "port"}, `ssh.users[0].forwarding[1]: "port" is listed twice`},
	}
	for _, tc := range tests {
		site := Example()
		site.SSH.Users[0].Forwarding = tc.forwarding
		err := site.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.forwarding, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.forwarding, err, tc.want)
		}
	}
}

package main

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps/bundle"
	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice/wgdevicetest"
)

// TestAnsibleCommand writes the inventory, playbook and known_hosts with
// the real binary: the folder 0700, the paths absolute, the host CA the
// state's; bad input exits 2 and writes nothing.
func TestAnsibleCommand(t *testing.T) {
	dir, st := workdir(t)
	out := filepath.Join(dir, "push")
	r := ztw(t, dir, "--state", st, "-c", "site.yaml", "ansible", "--out", "push", "--identity", "keys/admin",
		"--host-key", "db=SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE", "--confirm", "30s")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the folder: %v %v, want mode 0700", fi.Mode(), err)
	}
	inv, err := os.ReadFile(filepath.Join(out, "inventory.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ansible_ssh_private_key_file: "` + filepath.Join(dir, "keys/admin") + `"`,
		`ztwizard_ssh_certificate: "` + filepath.Join(dir, "keys/admin-cert.pub") + `"`,
		`ztwizard_site: "` + filepath.Join(dir, "site.yaml") + `"`,
		`ztwizard_state: "` + st + `"`,
		`ztwizard_local_binary: "` + bin + `"`,
		`ztwizard_confirm: "30s"`,
		`host_key_fingerprint: "SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"`,
	} {
		if !strings.Contains(string(inv), want) {
			t.Errorf("inventory.yml has no %s:\n%s", want, inv)
		}
	}
	kh, err := os.ReadFile(filepath.Join(out, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(st, "ssh", "host_ca.pub"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Fields(string(ca))[1]
	if !strings.Contains(string(kh), "@cert-authority db,192.168.1.100,web,192.168.1.50 ssh-ed25519 "+key) {
		t.Errorf("known_hosts does not trust the state's host CA %s:\n%s", key, kh)
	}

	// Bad input, even the first command on a new state folder, writes
	// nothing: not the folder, not the state.
	fresh := filepath.Join(dir, "fresh-state")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"ansible"}, "--out is required"},
		{"host key without node", []string{"ansible", "--out", "bad", "--host-key", "SHA256:x"}, `--host-key "SHA256:x": want NODE=SHA256:...`},
		{"unknown node", []string{"ansible", "--out", "bad", "--host-key", "dbx=SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"}, `no node "dbx"`},
		{"bad fingerprint", []string{"ansible", "--out", "bad", "--host-key", "db=MD5:00"}, `--host-key db="MD5:00": not a SHA256 fingerprint`},
		{"bad user", []string{"ansible", "--out", "bad", "--user", "a b"}, `--user "a b": not an account name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ztw(t, dir, append([]string{"--state", fresh, "-c", "site.yaml"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, want 2 and %q:\n%s%s", r.code, c.want, r.stdout, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
				t.Errorf("bad input made the folder: %v", err)
			}
			if _, err := os.Stat(fresh); !os.IsNotExist(err) {
				t.Errorf("bad input made the state folder: %v", err)
			}
		})
	}
}

// The fleet lab: three nodes and an admin, each a testenv.Machine (its own
// network, mount and UTS namespaces; its own /etc, /var, /run, /root and
// /tmp) joined by a bridge. Each node runs a real sshd that trusts the
// site's SSH user CA (root's authorized_keys holds a cert-authority line,
// as a freshly installed server might) and has a host key of its own; the
// admin, on the admin network, holds the CA host's state and runs Debian's
// ansible-playbook with the files `ztwizard ansible` wrote.

// fleetSite is the lab's site: db serves a database to app1 and app2 over
// the mesh; SSH is open to the admin network.
const fleetSite = `version: 1
site: lab
ca:
  subject: {common_name: Lab Root CA, organization: Lab}
ssh:
  admin_cidrs: [10.77.10.0/24]
  users:
    - {name: alice, principals: [root]}
wireguard:
  network: 10.100.0.0/24
nodes:
  - {name: db, endpoint: "10.77.1.1:51820", address: 10.100.0.1, peers: [app1, app2]}
  - {name: app1, endpoint: "10.77.1.2:51820", address: 10.100.0.2}
  - {name: app2, endpoint: "10.77.1.3:51820", address: 10.100.0.3}
databases:
  - {name: main, node: db, engine: mariadb, port: 3306, clients: [app1, app2]}
firewall:
  public_tcp: [443]
`

// Where the admin keeps things, inside the admin machine.
const (
	adminBin   = "/root/bin/ztwizard"
	adminSite  = "/root/site.yaml"
	adminState = "/root/state"
	adminKey   = "/root/.ssh/id_ed25519"
	adminPush  = "/root/push"
	adminAddr  = "10.77.10.5"
)

type fleetLab struct {
	t     testing.TB
	admin *testenv.Machine
	nodes []*fleetNode
}

type fleetNode struct {
	*testenv.Machine
	addr, mesh  string
	sshd        *testenv.Proc
	fingerprint string // of its SSH host key, as its console shows it
}

// newFleetLab builds the lab, the admin's state (CAs, alice's key and
// certificate) and the generated inventory and playbook.
func newFleetLab(t testing.TB) *fleetLab {
	t.Helper()
	if testing.Short() {
		t.Skip("namespaces, sshd and ansible-playbook: `make test` runs it")
	}
	requireLab(t)
	testenv.Need(t, "ansible-playbook", "ssh", "ssh-keygen", "ssh-keyscan", "nsenter")
	scratch := scratchDir(t)
	br := testenv.NewBridge(t)
	l := &fleetLab{t: t}
	l.admin = testenv.NewMachine(t, "admin", scratch, testenv.MachineOptions{Own: []string{"/root", "/tmp", "/run"}})
	br.Attach(t, l.admin.Netns, []string{adminAddr + "/24"}, []string{"10.77.1.0/24"})
	for _, dir := range []string{"/root/bin", "/root/.ssh"} {
		if err := os.MkdirAll(l.admin.Path(dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	testenv.MustRun(t, "cp", bin, l.admin.Path(adminBin))
	testenv.WriteFile(t, l.admin.Path("/root"), "site.yaml", []byte(fleetSite))
	l.admin.Must(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", adminKey)
	l.ztwAdmin("ssh", "sign", "--user", "alice", "--key", adminKey+".pub")
	userCA, err := os.ReadFile(l.admin.Path(adminState + "/ssh/user_ca.pub"))
	if err != nil {
		t.Fatal(err)
	}

	for i, name := range []string{"db", "app1", "app2"} {
		n := &fleetNode{addr: fmt.Sprintf("10.77.1.%d", i+1), mesh: fmt.Sprintf("10.100.0.%d", i+1)}
		n.Machine = testenv.NewMachine(t, name, scratch, testenv.MachineOptions{Setup: func(m *testenv.Machine) {
			keys, _ := filepath.Glob(m.Path("/etc/ssh/ssh_host_*"))
			for _, k := range keys {
				os.Remove(k)
			}
			testenv.MustRun(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@"+name, "-f", m.Path("/etc/ssh/ssh_host_ed25519_key"))
			if err := os.MkdirAll(m.Path("/root/.ssh"), 0o700); err != nil {
				t.Fatal(err)
			}
			testenv.WriteFile(t, m.Path("/root/.ssh"), "authorized_keys", append([]byte("cert-authority "), userCA...))
		}})
		br.Attach(t, n.Netns, []string{n.addr + "/24"}, []string{"10.77.10.0/24"})
		n.fingerprint = strings.Fields(testenv.MustRun(t, "ssh-keygen", "-l", "-f", n.Path("/etc/ssh/ssh_host_ed25519_key.pub")))[1]
		n.sshd = n.Start(t, "sshd", "/usr/sbin/sshd", "-D", "-e")
		waitFile(t, n.Path("/run/sshd.pid"), 10*time.Second)
		l.nodes = append(l.nodes, n)
	}

	// Ansible's connection masters outlive ansible-playbook for a while:
	// they go before the sshds (cleanups run last registered first), whose
	// sessions they hold open.
	t.Cleanup(func() {
		if err := l.admin.KillAll(); err != nil {
			t.Error(err)
		}
	})

	l.generate(nil)
	return l
}

// generate writes the inventory and playbook with `ztwizard ansible`, each
// node's host key fingerprint as fingerprints says (as its console showed
// it when fingerprints is nil; none for a node mapped to "").
func (l *fleetLab) generate(fingerprints map[string]string) {
	l.t.Helper()
	args := []string{"ansible", "--out", adminPush, "--identity", adminKey, "--binary", adminBin}
	for _, n := range l.nodes {
		fp, ok := fingerprints[n.Name]
		if !ok && fingerprints == nil {
			fp = n.fingerprint
		}
		if fp != "" {
			args = append(args, "--host-key", n.Name+"="+fp)
		}
	}
	l.ztwAdmin(args...)
}

// ztwAdmin runs ztwizard on the admin machine, the CA host, with its state
// and site, and fails the test unless it succeeds.
func (l *fleetLab) ztwAdmin(args ...string) string {
	l.t.Helper()
	return l.admin.Must(l.t, append([]string{adminBin, "--state", adminState, "-c", adminSite}, args...)...)
}

// push is a run of the playbook.
type push struct {
	code    int
	output  string
	recap   map[string]map[string]int // host -> ok, changed, failed, ...
	elapsed time.Duration
}

// push runs ansible-playbook on the admin machine with the generated
// inventory and playbook, and extra arguments.
func (l *fleetLab) push(extra ...string) push {
	l.t.Helper()
	args := append([]string{"ansible-playbook", "-v", "-i", adminPush + "/inventory.yml", adminPush + "/push.yml"}, extra...)
	start := time.Now()
	r := l.admin.Run(l.t, 5*time.Minute, []string{"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0"}, args...)
	p := push{code: r.Code, output: r.Stdout + r.Stderr, elapsed: time.Since(start), recap: map[string]map[string]int{}}
	_, recap, ok := strings.Cut(r.Stdout, "PLAY RECAP")
	if !ok {
		l.t.Fatalf("ansible-playbook (exit %d) printed no recap:\n%s", r.Code, p.output)
	}
	for line := range strings.Lines(recap) {
		host, counts, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		m := map[string]int{}
		for _, f := range strings.Fields(counts) {
			if k, v, ok := strings.Cut(f, "="); ok {
				m[k], _ = strconv.Atoi(v)
			}
		}
		p.recap[strings.TrimSpace(host)] = m
	}
	l.t.Logf("ansible-playbook %s: exit %d in %s", strings.Join(extra, " "), p.code, p.elapsed.Round(time.Millisecond))
	return p
}

// taskResult is what the output of -v says of task on host, over every
// batch and loop item: "fatal", "changed", "ok" or "skipping", the first
// of them that shows, or "" when the task did not run there.
func (p push) taskResult(task, host string) string {
	seen := map[string]bool{}
	for _, part := range strings.Split(p.output, "TASK ["+task+"]")[1:] {
		part, _, _ = strings.Cut(part, "\nTASK [")
		part, _, _ = strings.Cut(part, "\nPLAY ")
		for line := range strings.Lines(part) {
			for _, r := range []string{"fatal", "changed", "ok", "skipping"} {
				if strings.HasPrefix(line, r+": ["+host+"]") || strings.HasPrefix(line, r+": ["+host+" -> ") {
					seen[r] = true
				}
			}
		}
	}
	for _, r := range []string{"fatal", "changed", "ok", "skipping"} {
		if seen[r] {
			return r
		}
	}
	return ""
}

// dump is everything a push may change on the node: its /etc, its
// ruleset, its WireGuard interface as configured, zt0's addresses.
func (n *fleetNode) dump(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("## /etc\n")
	b.WriteString(testenv.TreeDump(t, n.Path("/etc")))
	b.WriteString("## nft list ruleset\n")
	b.WriteString(n.Must(t, "nft", "list", "ruleset"))
	b.WriteString("## wg show zt0 dump\n")
	if r := n.Run(t, testenv.CmdTimeout, nil, "wg", "show", "zt0", "dump"); r.Code == 0 {
		d, err := wgdevicetest.ParseDump(r.Stdout)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		fmt.Fprintf(&b, "private %s public %s port %s\n", d.PrivateKey, d.PublicKey, d.ListenPort)
		var peers []string
		for _, p := range d.Peers {
			peers = append(peers, fmt.Sprintf("peer %s endpoint %s allowed %s keepalive %s", p.PublicKey, p.Endpoint, p.AllowedIPs, p.Keepalive))
		}
		slices.Sort(peers)
		b.WriteString(strings.Join(peers, "\n") + "\n")
	} else {
		b.WriteString("no device zt0\n")
	}
	b.WriteString("## zt0 addresses\n")
	if r := n.Run(t, testenv.CmdTimeout, nil, "ip", "-o", "-4", "addr", "show", "dev", "zt0"); r.Code == 0 {
		for line := range strings.Lines(r.Stdout) {
			if f := strings.Fields(line); len(f) >= 4 {
				fmt.Fprintf(&b, "%s %s\n", f[2], f[3])
			}
		}
	} else {
		b.WriteString("no link zt0\n")
	}
	return b.String()
}

// privateKeys finds every private key in the node's /etc and /var (PEM and
// OpenSSH keys, and WireGuard keys), by public key, except in the files of
// /etc that are as this machine has them.
func (n *fleetNode) privateKeys(t testing.TB) map[string]string {
	t.Helper()
	found := map[string]string{}
	for _, dir := range []string{"/etc", "/var"} {
		err := filepath.WalkDir(n.Path(dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(n.Root, p)
			if dir == "/etc" {
				if orig, err := os.ReadFile("/" + rel); err == nil && bytes.Equal(orig, data) {
					return nil
				}
			}
			keys, err := bundle.PrivateKeysIn(data)
			if err != nil {
				return fmt.Errorf("/%s: %w", rel, err)
			}
			for _, k := range keys {
				der, err := x509.MarshalPKIXPublicKey(k)
				if err != nil {
					return err
				}
				found[hex.EncodeToString(der)] = "/" + rel
			}
			if k, err := wgtypes.ParseKey(strings.TrimSpace(string(data))); err == nil && strings.HasSuffix(p, ".key") {
				found["wg:"+k.PublicKey().String()] = "/" + rel
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: scan: %v", n.Name, err)
		}
	}
	return found
}

// host is the node as the apply tests' probes see it.
func (n *fleetNode) host(t testing.TB) *labHost {
	return &labHost{lab: &lab{t: t}, name: n.Name, ns: n.Netns}
}

// dumps is every node's dump, by name.
func (l *fleetLab) dumps() map[string]string {
	out := map[string]string{}
	for _, n := range l.nodes {
		out[n.Name] = n.dump(l.t)
	}
	return out
}

// strictSSH runs `hostname` on the node over a new SSH connection from the
// admin machine, checking its host key strictly against knownHosts only.
func (l *fleetLab) strictSSH(n *fleetNode, knownHosts string) testenv.Result {
	l.t.Helper()
	return l.admin.Run(l.t, testenv.CmdTimeout, nil, "ssh", "-F", "none", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "IdentitiesOnly=yes", "-i", adminKey, "-o", "ControlPath=none", "root@"+n.addr, "hostname")
}

// acceptedPorts lists the source ports of the admin's connections that the
// node's sshd accepted.
func (n *fleetNode) acceptedPorts() []string {
	var ports []string
	for line := range strings.Lines(n.sshd.Output()) {
		if _, rest, ok := strings.Cut(line, "Accepted publickey for root from "+adminAddr+" port "); ok {
			if port := strings.Fields(rest)[0]; !slices.Contains(ports, port) {
				ports = append(ports, port)
			}
		}
	}
	return ports
}

// TestAnsibleFleet is the fleet proof: a node that shows another host key
// than the one the admin confirmed stops the push before anything is
// touched; the generated playbook, run by the
// real ansible-playbook, brings three live nodes from their request to an
// applied, confirmed bundle; the mesh works and the database is reached
// over it only; every node's host key is verified through the
// @cert-authority line alone; a second run changes nothing; and a site
// change that closes SSH from the admin network is rolled back by each
// node it reached, at its deadline, reported failed, with no later batch
// started and nothing else changed.
func TestAnsibleFleet(t *testing.T) {
	l := newFleetLab(t)
	db, app1, app2 := l.nodes[0], l.nodes[1], l.nodes[2]
	before := l.dumps()

	// No silent trust on first use: app2 shows another key than the one
	// the admin confirmed, and the push stops before it touches any node.
	l.generate(map[string]string{"db": db.fingerprint, "app1": app1.fingerprint, "app2": db.fingerprint})
	p := l.push()
	if p.code == 0 || !strings.Contains(p.output, "app2 (10.77.1.3) shows no host key with fingerprint "+db.fingerprint) {
		t.Fatalf("a host key other than the one confirmed: exit %d\n%s", p.code, p.output)
	}
	for _, n := range l.nodes {
		if got := p.taskResult("Copy ztwizard", n.Name); got != "" {
			t.Errorf("%s: ztwizard copied after a host showed an unknown key: %q", n.Name, got)
		}
	}
	if _, err := os.Stat(l.admin.Path(adminPush + "/pinned_hosts")); !os.IsNotExist(err) {
		t.Errorf("keys pinned though a host showed an unknown one: %v", err)
	}
	for name, d := range l.dumps() {
		if d != before[name] {
			t.Errorf("%s changed:\n%s", name, testenv.DiffLines(before[name], d))
		}
	}
	l.generate(nil)

	// The first push.
	p = l.push()
	if p.code != 0 {
		t.Fatalf("first push: exit %d\n%s", p.code, p.output)
	}
	for _, n := range l.nodes {
		if r := p.recap[n.Name]; r["failed"] != 0 || r["unreachable"] != 0 || r["ok"] == 0 {
			t.Errorf("%s: recap %v", n.Name, r)
		}
		for task, want := range map[string]string{
			"Pin it in pinned_hosts": "changed",
			"Apply it; unless confirmed, the node rolls it back at the deadline": "changed",
			"Confirm from a new SSH connection, proof that you still get in":     "changed",
			"Check the confirm came over a connection of its own":                "ok",
		} {
			if got := p.taskResult(task, n.Name); got != want {
				t.Errorf("%s: task %q: %q, want %q", n.Name, task, got, want)
			}
		}
		// The confirm came over a connection of its own: sshd accepted
		// the admin from more than one source port.
		if ports := n.acceptedPorts(); len(ports) < 2 {
			t.Errorf("%s: sshd accepted the admin over %d connection(s) %v, want the apply's and the confirm's", n.Name, len(ports), ports)
		}
		if r := n.Run(t, testenv.CmdTimeout, nil, "nft", "list", "table", "inet", "ztwizard"); r.Code != 0 {
			t.Errorf("%s: no inet ztwizard table after the push: %s", n.Name, r.Stderr)
		}
	}
	if t.Failed() {
		t.Fatalf("first push:\n%s", p.output)
	}
	applied := l.dumps()

	// No node holds a key of the CA host (its CAs') nor another node's
	// private key; each holds its own (SSH host key, WireGuard key), made
	// there. Files of /etc as this machine has them are left out.
	caKeys := privateKeys(t, l.admin.Path(adminState))
	if len(caKeys) < 3 {
		t.Fatalf("the scan found %d keys in the CA host's state: it sees too little", len(caKeys))
	}
	own := map[string]map[string]string{}
	for _, n := range l.nodes {
		own[n.Name] = n.privateKeys(t)
		for k, p := range own[n.Name] {
			if ca, ok := caKeys[k]; ok {
				t.Errorf("%s: %s holds the CA host's private key %s", n.Name, p, ca)
			}
		}
		if len(own[n.Name]) < 2 {
			t.Errorf("%s: the scan found %d keys of its own, want its SSH host key and WireGuard key: it sees too little", n.Name, len(own[n.Name]))
		}
	}
	for _, a := range l.nodes {
		for _, b := range l.nodes {
			for k, p := range own[a.Name] {
				if q, ok := own[b.Name][k]; ok && a != b {
					t.Errorf("%s holds %s's private key (%s, %s)", a.Name, b.Name, p, q)
				}
			}
		}
	}
	for _, n := range l.nodes {
		if applied[n.Name] == before[n.Name] {
			t.Errorf("%s: the push changed nothing", n.Name)
		}
	}

	// The mesh: db's database answers app1 and app2 over WireGuard, and
	// no one on the node network or the admin network.
	db.host(t).listen("0.0.0.0:3306")
	for _, n := range []*fleetNode{app1, app2} {
		if got := n.host(t).probeUntil(db.mesh+":3306", reachOpen, 20*time.Second); got != reachOpen {
			t.Errorf("%s -> db over the mesh: %s", n.Name, got)
		}
		if got := n.host(t).probe(db.addr+":3306", probeTimeout); got != reachDropped {
			t.Errorf("%s -> db's endpoint address: %s, want dropped", n.Name, got)
		}
	}
	if got := (&labHost{lab: &lab{t: t}, name: "admin", ns: l.admin.Netns}).probe(db.addr+":3306", probeTimeout); got != reachDropped {
		t.Errorf("admin -> db:3306: %s, want dropped", got)
	}
	hs := db.Must(t, "wg", "show", "zt0", "latest-handshakes")
	if n := strings.Count(hs, "\t") - strings.Count(hs, "\t0\n"); n != 2 {
		t.Errorf("db: %d peers with a handshake, want 2:\n%s", n, hs)
	}

	// Strict host key checking through the @cert-authority line alone:
	// the generated known_hosts holds nothing else, and pinned_hosts (the
	// first contact's keys) is not used.
	kh, err := os.ReadFile(l.admin.Path(adminPush + "/known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(kh)) {
		if !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "@cert-authority db,10.77.1.1,app1,10.77.1.2,app2,10.77.1.3 ssh-ed25519 ") {
			t.Errorf("known_hosts holds more than the @cert-authority line: %q", line)
		}
	}
	testenv.WriteFile(t, l.admin.Path("/root"), "empty_known_hosts", nil)
	for _, n := range l.nodes {
		if r := l.strictSSH(n, adminPush+"/known_hosts"); r.Code != 0 || strings.TrimSpace(r.Stdout) != n.Name {
			t.Errorf("%s: ssh with the @cert-authority line only: exit %d %q %s", n.Name, r.Code, r.Stdout, r.Stderr)
		}
		if r := l.strictSSH(n, "/root/empty_known_hosts"); r.Code == 0 || !strings.Contains(r.Stderr, "Host key verification failed") {
			t.Errorf("%s: ssh trusting nothing got in, or failed otherwise: exit %d %s", n.Name, r.Code, r.Stderr)
		}
	}

	// From now on the nodes are certified: the inventory needs no host
	// key fingerprints and no key stays pinned; Ansible itself now trusts
	// them through the @cert-authority line alone.
	l.generate(map[string]string{})
	if err := os.Remove(l.admin.Path(adminPush + "/pinned_hosts")); err != nil {
		t.Fatal(err)
	}

	// A second run, all nodes in one batch, changes nothing.
	p = l.push("-e", "ztwizard_serial=3")
	if p.code != 0 {
		t.Fatalf("second push: exit %d\n%s", p.code, p.output)
	}
	for _, n := range l.nodes {
		for task, want := range map[string]string{
			"Read the host's public keys":                                        "skipping",
			"Apply it; unless confirmed, the node rolls it back at the deadline": "ok",
			"Confirm from a new SSH connection, proof that you still get in":     "skipping",
		} {
			if got := p.taskResult(task, n.Name); got != want {
				t.Errorf("second push: %s: task %q: %q, want %q", n.Name, task, got, want)
			}
		}
	}
	if !strings.Contains(p.output, "node db: no changes") {
		t.Errorf("second push: apply did not say no changes:\n%s", p.output)
	}
	for name, d := range l.dumps() {
		if d != applied[name] {
			t.Errorf("second push changed %s:\n%s", name, testenv.DiffLines(applied[name], d))
		}
	}
	if t.Failed() {
		t.Fatalf("second push:\n%s", p.output)
	}

	// A site change that closes SSH from the admin network, pushed two
	// nodes a batch with a short window: db and app1 apply it, cannot be
	// reached again, are reported failed and roll back by themselves at
	// the deadline; app2, in the next batch, is never touched.
	site := strings.Replace(fleetSite, "admin_cidrs: [10.77.10.0/24]", "admin_cidrs: [10.77.99.0/24]", 1)
	testenv.WriteFile(t, l.admin.Path("/root"), "site.yaml", []byte(site))
	const window = 20 * time.Second
	p = l.push("-e", "ztwizard_confirm="+window.String(), "-e", "ztwizard_serial=2")
	pushed := time.Now()
	if p.code == 0 {
		t.Fatalf("the locking-out push succeeded:\n%s", p.output)
	}
	for _, n := range []*fleetNode{db, app1} {
		if r := p.recap[n.Name]; r["failed"] != 1 {
			t.Errorf("%s: recap %v, want failed=1", n.Name, r)
		}
		if got := p.taskResult("Apply it; unless confirmed, the node rolls it back at the deadline", n.Name); got != "changed" {
			t.Errorf("%s: the apply: %q, want changed", n.Name, got)
		}
	}
	if !strings.Contains(p.output, "could not be reached over a new SSH connection") {
		t.Errorf("no node reported unreachable after its apply:\n%s", p.output)
	}
	if got := p.taskResult("Copy the bundle", app2.Name); got != "" {
		t.Errorf("app2, in the batch after the failure, got its bundle: %q", got)
	}
	if r := p.recap[app2.Name]; r["failed"] != 0 || r["unreachable"] != 0 {
		t.Errorf("app2: recap %v", r)
	}
	if d := app2.dump(t); d != applied[app2.Name] {
		t.Errorf("app2 changed:\n%s", testenv.DiffLines(applied[app2.Name], d))
	}
	// Back as before at the deadline, by themselves.
	for _, n := range []*fleetNode{db, app1} {
		want, deadline := applied[n.Name], pushed.Add(window+30*time.Second)
		got := n.dump(t)
		for got != want && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			got = n.dump(t)
		}
		if got != want {
			t.Errorf("%s: not rolled back by %s after the push:\n%s", n.Name, window+30*time.Second, testenv.DiffLines(want, got))
		}
		// By itself: its watchdog did it.
		if log, err := os.ReadFile(n.Path("/var/lib/ztwizard/apply/watchdog.log")); err != nil || !strings.Contains(string(log), "rolled back the apply of node "+n.Name) {
			t.Errorf("%s: the watchdog's log does not tell of the rollback: %v\n%s", n.Name, err, log)
		}
		if r := l.strictSSH(n, adminPush+"/known_hosts"); r.Code != 0 {
			t.Errorf("%s: the admin cannot get in after the rollback: %s", n.Name, r.Stderr)
		}
	}
	if d := app2.dump(t); d != applied[app2.Name] {
		t.Errorf("app2 changed:\n%s", testenv.DiffLines(applied[app2.Name], d))
	}
	if t.Failed() {
		t.Logf("the locking-out push:\n%s", p.output)
	}
}

// BenchmarkAnsiblePush times ansible-playbook pushing the fleet lab's three
// nodes with the generated files, as an admin runs it: the first push
// (first contact, requests, imports, bundles, then one node a batch, each
// confirmed over a new connection) per op, and a second run that changes
// nothing as again-s/op. Each op builds a lab of its own, untimed.
func BenchmarkAnsiblePush(b *testing.B) {
	var again time.Duration
	for range b.N {
		b.StopTimer()
		l := newFleetLab(b)
		b.StartTimer()
		p := l.push()
		b.StopTimer()
		if p.code != 0 {
			b.Fatalf("first push: exit %d\n%s", p.code, p.output)
		}
		p = l.push()
		if p.code != 0 {
			b.Fatalf("second push: exit %d\n%s", p.code, p.output)
		}
		again += p.elapsed
	}
	b.ReportMetric(again.Seconds()/float64(b.N), "again-s/op")
}

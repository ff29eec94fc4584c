package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice/wgdevicetest"
)

// The apply tests run the real binary against the real kernel. Each
// simulated host is a network namespace; a node also gets a mount
// namespace per command, in which its own copy of /etc and its own /run
// folder are bind-mounted over the machine's, so that nothing of this
// machine's /etc or /run (its sshd.pid, its WireGuard sockets) is touched,
// and both nodes can name their link zt0. Every namespace, and every
// process left in one (userspace WireGuard devices, watchdogs, daemons), is
// removed when the test ends.

// probeTimeout bounds a probe's connection; testenv.CmdTimeout bounds
// every program run.
const probeTimeout = 1 * time.Second

// requireLab fails the test unless it runs as root with the tools the lab
// needs: these tests prove behaviour in the kernel, so they never skip.
func requireLab(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	wgdevicetest.RequireTools(t, "ip", "nft", "wg", "unshare", "mount", "cp", "nginx", "sshd")
}

// scratchDir is a folder for node trees, on tmpfs where there is one:
// copying /etc there takes milliseconds instead of a second.
func scratchDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "ztwizard-apply-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// lab is a set of simulated hosts, optionally on one bridge (in a
// namespace of its own) that joins them at layer 2.
type lab struct {
	t      testing.TB
	dir    string // site files and the shared state
	nodes  string // where node trees go
	etc    string // a copy of /etc taken once, the source of every node's
	state  string // the shared state, the source of every node's
	bridge string // the bridge namespace; "" without a bridge
}

// labHost is one simulated host: a network namespace (see
// testenv.NewNetns), and for a node its own /etc, /run and state folder.
type labHost struct {
	lab   *lab
	name  string
	node  string // the ztwizard node it is; "" for other hosts
	ns    string
	etc   string
	run   string
	state string
}

// newLab makes an empty lab; its namespaces, and every process left in
// them, are removed when the test ends. Node trees go on
// tmpfs where there is one, or with onDisk on the disk, as a real host's
// /etc and state are.
func newLab(t testing.TB, onDisk bool) *lab {
	t.Helper()
	if testing.Short() {
		t.Skip("namespaces and the real binary: `make test` runs it")
	}
	requireLab(t)
	scratch := scratchDir(t)
	l := &lab{t: t, dir: t.TempDir(), nodes: scratch}
	if onDisk {
		l.nodes = t.TempDir()
	}
	l.etc = filepath.Join(scratch, "etc.orig")
	l.state = filepath.Join(scratch, "state.shared")
	testenv.MustRun(t, "cp", "-a", "/etc", l.etc)
	return l
}

// addBridge makes the bridge the lab's hosts join.
func (l *lab) addBridge() {
	l.t.Helper()
	l.bridge = testenv.NewNetns(l.t, "zta-br-")
	testenv.MustRun(l.t, "ip", "-n", l.bridge, "link", "add", "br0", "type", "bridge")
	testenv.MustRun(l.t, "ip", "-n", l.bridge, "link", "set", "br0", "up")
}

// addHost makes a namespace with loopback up and, with a bridge, an eth0
// on it holding addrs; routes are on-link routes to more networks.
func (l *lab) addHost(name string, addrs, routes []string) *labHost {
	l.t.Helper()
	h := &labHost{lab: l, name: name, ns: testenv.NewNetns(l.t, "zta-"+name+"-")}
	if l.bridge == "" {
		return h
	}
	veth := "v" + name
	testenv.MustRun(l.t, "ip", "-n", l.bridge, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	testenv.MustRun(l.t, "ip", "-n", l.bridge, "link", "set", veth, "master", "br0", "up")
	for _, a := range addrs {
		testenv.MustRun(l.t, "ip", "-n", h.ns, "addr", "add", a, "dev", "eth0")
	}
	testenv.MustRun(l.t, "ip", "-n", h.ns, "link", "set", "eth0", "up")
	for _, r := range routes {
		testenv.MustRun(l.t, "ip", "-n", h.ns, "route", "add", r, "dev", "eth0")
	}
	return h
}

// writeSite writes a site file into the lab's folder and returns its path.
func (l *lab) writeSite(name string, data []byte) string {
	l.t.Helper()
	path := filepath.Join(l.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return path
}

// prepareState creates the shared state: the CAs and every node's keys
// and certificates, by rendering each node of each site once (its SSH host
// key recorded first). Node states copied afterwards all hold the same
// secrets.
func (l *lab) prepareState(sites ...string) {
	l.t.Helper()
	for _, site := range sites {
		s, err := steps.Load(site)
		if err != nil {
			l.t.Fatal(err)
		}
		for _, n := range s.Nodes {
			// Every node's /etc is a copy of l.etc: record its SSH host key
			// (as apply on the host would), so that every copy of the state
			// holds the same host certificate.
			hostKey := filepath.Join(l.etc, "ssh", "ssh_host_ed25519_key.pub")
			if _, err := os.Stat(hostKey); err == nil {
				if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, "--state", l.state, "-c", site, "ssh", "sign", "--host", n.Name, "--key", hostKey, "--out", filepath.Join(l.dir, "host-"+n.Name+"-cert.pub")); err != nil {
					l.t.Fatal(err)
				}
			}
			out := filepath.Join(l.dir, "render", filepath.Base(site), n.Name)
			if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, "--state", l.state, "-c", site, "render", "--node", n.Name, "--out", out); err != nil {
				l.t.Fatal(err)
			}
		}
	}
}

// addNode makes a host that is the ztwizard node of its name: its own
// copies of /etc and of the shared state, and an empty /run (with sshd's
// privilege separation folder).
func (l *lab) addNode(name string, addrs, routes []string) *labHost {
	l.t.Helper()
	return l.addNodeAs(name, name, addrs, routes)
}

// addNodeAs makes a host called name that is the ztwizard node node.
func (l *lab) addNodeAs(name, node string, addrs, routes []string) *labHost {
	l.t.Helper()
	h := l.addHost(name, addrs, routes)
	h.node = node
	root := filepath.Join(l.nodes, name)
	h.etc, h.run, h.state = filepath.Join(root, "etc"), filepath.Join(root, "run"), filepath.Join(root, "state")
	if err := os.MkdirAll(filepath.Join(h.run, "sshd"), 0o755); err != nil {
		l.t.Fatal(err)
	}
	testenv.MustRun(l.t, "cp", "-a", l.etc, h.etc)
	if _, err := os.Stat(l.state); err == nil {
		testenv.MustRun(l.t, "cp", "-a", l.state, h.state)
	}
	return h
}

// nodeScript runs "$@" with the node's /etc and /run mounted over the
// machine's ones, in a mount namespace of its own.
const nodeScript = `mount --bind "$1" /etc && mount --bind "$2" /run && shift 2 && exec "$@"`

// command is args run inside the host: its network namespace and, for a
// node, its /etc and /run. The process is args[0] itself (ip, unshare and
// sh each exec the next), so a signal to it reaches the program.
func (h *labHost) command(ctx context.Context, args ...string) *exec.Cmd {
	argv := []string{"netns", "exec", h.ns}
	if h.etc != "" {
		argv = append(argv, "unshare", "-m", "--propagation", "private", "sh", "-c", nodeScript, "sh", h.etc, h.run)
	}
	cmd := exec.CommandContext(ctx, "ip", append(argv, args...)...)
	env := []string{"TZ=UTC"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "ZTWIZARD_STATE" && k != "SSH_CONNECTION" && k != "SSH_CLIENT" && k != "TZ" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

// exec runs args inside the host, bounded in time.
func (h *labHost) exec(args ...string) result {
	h.lab.t.Helper()
	stdout, stderr, err := testenv.RunCmd(context.Background(), testenv.CmdTimeout, h.command(context.Background(), args...))
	code, err := testenv.ExitCode(err)
	if err != nil {
		h.lab.t.Fatalf("%s: %v", h.name, err)
	}
	return result{code, stdout, stderr}
}

// must runs args inside the host and fails the test unless they succeed.
func (h *labHost) must(args ...string) string {
	h.lab.t.Helper()
	r := h.exec(args...)
	if r.code != 0 {
		h.lab.t.Fatalf("%s: %s: exit %d\n%s%s", h.name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// ztw runs the real ztwizard inside the node, on the node's state.
func (h *labHost) ztw(args ...string) result {
	h.lab.t.Helper()
	return h.exec(append([]string{bin, "--state", h.state}, args...)...)
}

// apply applies site to the node and fails the test unless it succeeds.
func (h *labHost) apply(site string, extra ...string) result {
	h.lab.t.Helper()
	r := h.ztw(append([]string{"-c", site, "apply", "--node", h.node}, extra...)...)
	if r.code != 0 {
		h.lab.t.Fatalf("%s: apply %s: exit %d\n%s%s", h.name, filepath.Base(site), r.code, r.stdout, r.stderr)
	}
	return r
}

// pids lists the processes in the host's network namespace, this one
// aside: a thread of it that entered the namespace for a probe can leave
// the process listed there.
func (h *labHost) pids() []int {
	pids, err := testenv.NetnsPIDs(h.ns)
	if err != nil {
		h.lab.t.Fatalf("%s: %v", h.name, err)
	}
	return pids
}

// ztwizardProcesses lists the arguments of the ztwizard processes left in
// the host (userspace devices, watchdogs), sorted.
func (h *labHost) ztwizardProcesses() []string {
	var out []string
	for _, pid := range h.pids() {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if args[0] != bin {
			continue
		}
		for i, a := range args {
			if strings.HasPrefix(a, h.state) {
				args[i] = "STATE"
			}
		}
		out = append(out, strings.Join(args[1:], " "))
	}
	slices.Sort(out)
	return out
}

// dump is everything an apply may change on the node: every entry of its
// /etc (type, mode, owner, content digest), its whole ruleset, its
// WireGuard interface (key, port, peers as configured; not handshakes or
// counters), the interface's addresses, and the ztwizard processes that
// run there. Two nodes with equal dumps are in the same state.
func (h *labHost) dump() string {
	t := h.lab.t
	t.Helper()
	var b strings.Builder
	b.WriteString("## /etc\n")
	b.WriteString(testenv.TreeDump(t, h.etc))
	b.WriteString("## nft list ruleset\n")
	b.WriteString(h.must("nft", "list", "ruleset"))
	b.WriteString("## wg show zt0 dump\n")
	b.WriteString(h.wgConfig())
	b.WriteString("## zt0 addresses\n")
	if r := h.exec("ip", "-o", "addr", "show", "dev", "zt0"); r.code == 0 {
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if f := strings.Fields(line); len(f) >= 4 && !strings.HasPrefix(f[3], "fe80:") {
				fmt.Fprintf(&b, "%s %s\n", f[2], f[3])
			}
		}
		link := h.must("ip", "-o", "link", "show", "dev", "zt0")
		fmt.Fprintf(&b, "up %v\n", strings.Contains(link, ",UP"))
	} else {
		b.WriteString("no link zt0\n")
	}
	b.WriteString("## ztwizard processes\n")
	for _, p := range h.ztwizardProcesses() {
		b.WriteString(p + "\n")
	}
	return b.String()
}

// wgConfig is `wg show zt0 dump` without what traffic changes (latest
// handshake, transfer counters), or "no device".
func (h *labHost) wgConfig() string {
	r := h.exec("wg", "show", "zt0", "dump")
	if r.code != 0 {
		return "no device zt0\n"
	}
	d, err := wgdevicetest.ParseDump(r.stdout)
	if err != nil {
		h.lab.t.Fatalf("%s: %v", h.name, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "private %s public %s port %s\n", d.PrivateKey, d.PublicKey, d.ListenPort)
	var peers []string
	for _, p := range d.Peers {
		peers = append(peers, fmt.Sprintf("peer %s psk %s endpoint %s allowed %s keepalive %s",
			p.PublicKey, p.PresharedKey, p.Endpoint, p.AllowedIPs, p.Keepalive))
	}
	slices.Sort(peers)
	for _, p := range peers {
		b.WriteString(p + "\n")
	}
	return b.String()
}

// listen starts a TCP listener at addr inside the host; every connection
// it accepts is answered with "ok\n" and closed. It stops when the test
// ends.
func (h *labHost) listen(addr string) {
	t := h.lab.t
	t.Helper()
	var ln net.Listener
	if err := testenv.InNetns(h.ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("%s: listen on %s: %v", h.name, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(probeTimeout))
			c.Write([]byte("ok\n"))
			c.Close()
		}
	}()
}

// Outcomes of a probe.
const (
	reachOpen    = "open"        // connected
	reachDropped = "dropped"     // no answer at all within the timeout
	reachRefused = "refused"     // reset: nothing listens
	reachNoRoute = "unreachable" // no route
)

// probe connects from the host to addr (host:port) and tells what came of
// it; the connection is bounded by timeout.
func (h *labHost) probe(addr string, timeout time.Duration) string {
	var outcome string
	err := testenv.InNetns(h.ns, func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			outcome = reachRefused
			return nil
		case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
			outcome = reachNoRoute
			return nil
		case errors.As(err, &ne) && ne.Timeout():
			outcome = reachDropped
			return nil
		case err != nil:
			return err
		}
		c.Close()
		outcome = reachOpen
		return nil
	})
	if err != nil {
		return "error: " + err.Error()
	}
	return outcome
}

// probeUntil probes until the outcome is want or within has passed, and
// returns the last outcome: daemons take a moment to follow a reload.
func (h *labHost) probeUntil(addr, want string, within time.Duration) string {
	deadline := time.Now().Add(within)
	for {
		got := h.probe(addr, probeTimeout)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs a daemon inside the host in the background; it is killed
// when the lab goes.
func (h *labHost) start(args ...string) {
	t := h.lab.t
	t.Helper()
	cmd := h.command(context.Background(), args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start %s: %v", h.name, args[0], err)
	}
	go cmd.Wait()
}

// waitFile waits until path exists and is not empty.
func waitFile(t testing.TB, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %s", path, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSSHD runs the node's sshd on port 22, as its host would, and waits
// for its pid file (in the node's /run): an apply reloads it.
func (h *labHost) startSSHD() {
	h.lab.t.Helper()
	h.start("/usr/sbin/sshd", "-D", "-e")
	waitFile(h.lab.t, filepath.Join(h.run, "sshd.pid"), 10*time.Second)
}

// handshake waits until the node's peer has completed a WireGuard
// handshake, nudging it with probes to addr over the mesh.
func (h *labHost) handshake(addr string, within time.Duration) {
	t := h.lab.t
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := h.exec("wg", "show", "zt0", "latest-handshakes")
		if f := strings.Fields(r.stdout); r.code == 0 && len(f) == 2 && f[1] != "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no WireGuard handshake within %s: %s%s", h.name, within, r.stdout, r.stderr)
		}
		h.probe(addr, 200*time.Millisecond)
	}
}

// pingFlood sends n ICMP echo requests to dst from the host, spread over
// the period, and counts the replies that come back within a second after.
func (h *labHost) pingFlood(dst string, n int, period time.Duration) int {
	t := h.lab.t
	t.Helper()
	var conn net.PacketConn
	if err := testenv.InNetns(h.ns, func() (err error) {
		conn, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatalf("%s: ICMP socket: %v", h.name, err)
	}
	defer conn.Close()
	id := uint16(os.Getpid())
	replies := map[uint16]bool{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			k, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if from.String() == dst && k >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
				mu.Lock()
				replies[binary.BigEndian.Uint16(buf[6:])] = true
				mu.Unlock()
			}
		}
	}()
	to := &net.IPAddr{IP: net.ParseIP(dst)}
	gap := period / time.Duration(n)
	for seq := range uint16(n) {
		if _, err := conn.WriteTo(testenv.EchoRequest(id, seq), to); err != nil {
			t.Fatalf("%s: send echo: %v", h.name, err)
		}
		time.Sleep(gap)
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	<-done
	mu.Lock()
	defer mu.Unlock()
	return len(replies)
}

// exampleLab is the DESIGN example on one bridge: db and web, an admin
// host inside ssh.admin_cidrs (192.168.10.0/24) and an outsider outside
// it. Every host reaches the others at layer 2; db and web answer the
// admin network over on-link routes.
func exampleLab(t *testing.T) (l *lab, site string, hosts map[string]*labHost) {
	t.Helper()
	l = newLab(t, false)
	site = l.writeSite("site.yaml", steps.ExampleYAML)
	l.prepareState(site)
	l.addBridge()
	hosts = map[string]*labHost{
		"db":       l.addNode("db", []string{"192.168.1.100/24"}, []string{"192.168.10.0/24"}),
		"web":      l.addNode("web", []string{"192.168.1.50/24"}, []string{"192.168.10.0/24"}),
		"admin":    l.addHost("admin", []string{"192.168.10.5/24"}, []string{"192.168.1.0/24"}),
		"outsider": l.addHost("outsider", []string{"192.168.1.200/24"}, nil),
	}
	return l, site, hosts
}

// TestApplyReachability applies the example's db and web plans with the
// real ztwizard in their namespaces, each running its daemons (sshd on
// both, nginx on web) and listeners for the database (db:3306) and the
// service's upstream (web:8080). The mesh handshake completes, and each
// line of the matrix holds before any apply (the network itself is open)
// and after (the firewall decides). A ping flood is rate-limited.
func TestApplyReachability(t *testing.T) {
	_, site, h := exampleLab(t)
	h["db"].startSSHD()
	h["web"].startSSHD()
	h["web"].must("nginx")
	waitFile(t, filepath.Join(h["web"].run, "nginx.pid"), 10*time.Second)
	h["db"].listen("0.0.0.0:3306")
	h["web"].listen("0.0.0.0:8080")

	matrix := []struct {
		from, to string
		addr     string // host:port probed
		before   string // before any apply; "" where the mesh does not exist yet
		after    string
	}{
		{"web", "db", "10.100.0.1:3306", "", reachOpen},                       // the database's client, over the mesh
		{"web", "db", "192.168.1.100:3306", reachOpen, reachDropped},          // the database only over the mesh
		{"outsider", "db", "192.168.1.100:3306", reachOpen, reachDropped},     // nobody else
		{"outsider", "db", "192.168.1.100:22", reachOpen, reachDropped},       // SSH only from admin_cidrs and the mesh
		{"admin", "db", "192.168.1.100:22", reachOpen, reachOpen},             // admin_cidrs
		{"web", "db", "10.100.0.1:22", "", reachDropped},                      // SSH over the mesh only from ssh.admin_nodes (none)
		{"db", "web", "10.100.0.2:22", "", reachDropped},                      // nor from the database node
		{"outsider", "web", "192.168.1.50:443", reachRefused, reachOpen},      // public_tcp; nginx reloaded with the service
		{"outsider", "web", "192.168.1.50:80", reachOpen, reachOpen},          // public_tcp
		{"outsider", "web", "192.168.1.50:22", reachOpen, reachDropped},       // SSH only from admin_cidrs and the mesh
		{"admin", "web", "192.168.1.50:22", reachOpen, reachOpen},             // admin_cidrs
		{"db", "web", "192.168.1.50:8080", reachOpen, reachDropped},           // the upstream is not public
		{"db", "web", "10.100.0.2:8080", "", reachDropped},                    // nor open to the mesh
		{"outsider", "web", "192.168.1.50:51820", reachRefused, reachDropped}, // TCP on WireGuard's (UDP) port
	}
	check := func(phase string, want func(i int) string) {
		t.Helper()
		got := make([]string, len(matrix))
		var wg sync.WaitGroup
		for i, m := range matrix {
			if want(i) == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if want(i) == reachOpen {
					got[i] = h[m.from].probeUntil(m.addr, reachOpen, 5*time.Second)
				} else {
					got[i] = h[m.from].probe(m.addr, probeTimeout)
				}
			}()
		}
		wg.Wait()
		for i, m := range matrix {
			if want(i) != "" && got[i] != want(i) {
				t.Errorf("%s: %s -> %s %s: %s, want %s", phase, m.from, m.to, m.addr, got[i], want(i))
			}
		}
	}
	check("before", func(i int) string { return matrix[i].before })
	if n := h["outsider"].pingFlood("192.168.1.50", 200, time.Second); n < 190 {
		t.Errorf("before: %d of 200 echo requests answered without a firewall, want nearly all", n)
	}
	if t.Failed() {
		t.FailNow()
	}

	for _, node := range []string{"db", "web"} {
		r := h[node].apply(site, "--no-confirm")
		if !strings.Contains(r.stdout, "firewall replaced, wireguard replaced") {
			t.Errorf("%s: apply output:\n%s", node, r.stdout)
		}
		if node == "web" && !strings.Contains(r.stdout, "reloaded ssh.service, nginx.service") {
			t.Errorf("web: sshd and nginx were not reloaded:\n%s", r.stdout)
		}
		if procs := h[node].ztwizardProcesses(); !slices.Equal(procs, []string{"wg device zt0"}) {
			t.Errorf("%s: ztwizard processes %q, want the userspace device alone", node, procs)
		}
	}
	h["web"].handshake("10.100.0.1:22", 20*time.Second)
	h["db"].handshake("10.100.0.2:22", 20*time.Second)

	check("after", func(i int) string { return matrix[i].after })
	n := h["outsider"].pingFlood("192.168.1.50", 200, time.Second)
	if n == 0 || n > 40 {
		t.Errorf("after: %d of 200 echo requests in a second answered, want some and at most 40 (icmp_rate 10/second)", n)
	}
	t.Logf("ping flood: %d of 200 answered", n)
	for _, node := range []string{"db", "web"} {
		if r := h[node].ztw("status"); r.code != 0 || !strings.Contains(r.stdout, "files installed on this host") || strings.Contains(r.stdout, "PENDING") {
			t.Errorf("%s: status: %+v", node, r)
		}
	}
}

// siteVariant is the example site with each old string replaced by the
// next one; a replacement that matches nothing fails the test.
func siteVariant(t testing.TB, pairs ...string) []byte {
	t.Helper()
	return testenv.Substitute(t, steps.ExampleYAML, pairs...)
}

// Sites A, B and C: the example, and two variations of it that change for
// node db its admin networks, public ports, WireGuard port, keepalive and
// peers, and move the service onto it and the database off it (B), or add
// a peer and a database client and change the ICMP rate (C).
func sitesABC(t testing.TB) map[string][]byte {
	t.Helper()
	return map[string][]byte{
		"A": steps.ExampleYAML,
		"B": siteVariant(t,
			"admin_cidrs: [192.168.10.0/24]", "admin_cidrs: [192.168.10.0/24, 10.20.0.0/16]",
			"listen_port: 51820", "listen_port: 51821",
			"address: 10.100.0.1, peers: [web]}", "address: 10.100.0.1, peers: [web], keepalive: 15}",
			"node: web, server_name: api.internal.example.com, listen: 443,", "node: db, server_name: api.internal.example.com, listen: 8443,",
			"{name: main, node: db, engine: mariadb, port: 3306, clients: [web]}", "{name: main, node: web, engine: mariadb, port: 3306, clients: [db]}",
			"public_tcp: [80, 443]", "public_tcp: [80, 443, 8443]",
		),
		"C": siteVariant(t,
			"admin_cidrs: [192.168.10.0/24]", "admin_cidrs: [172.16.0.0/12]",
			"address: 10.100.0.1, peers: [web]}", "address: 10.100.0.1, peers: [web, cache]}",
			"peers: [db], keepalive: 25}", "peers: [db], keepalive: 25}\n  - {name: cache, endpoint: \"192.168.1.60:51820\", address: 10.100.0.3, peers: [db]}",
			"port: 3306, clients: [web]}", "port: 3307, clients: [web, cache]}",
			"public_tcp: [80, 443]", "public_tcp: [443]",
			"icmp_rate: 10/second", "icmp_rate: 600/minute",
		),
	}
}

// running is a ztwizard started in the background.
type running struct {
	cmd  *exec.Cmd
	out  testenv.Buffer
	line chan string // each line of its standard output
	done chan error
}

// startZtw starts ztwizard inside the node without waiting for it.
func (h *labHost) startZtw(args ...string) *running {
	t := h.lab.t
	t.Helper()
	cmd := h.command(context.Background(), append([]string{bin, "--state", h.state}, args...)...)
	r := &running{cmd: cmd, line: make(chan string, 64), done: make(chan error, 1)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &r.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start ztwizard: %v", h.name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.out.Write([]byte(sc.Text() + "\n"))
			select {
			case r.line <- sc.Text():
			default:
			}
		}
		r.done <- cmd.Wait()
	}()
	return r
}

// wait waits for the process to end, at most within, and tells whether it
// ended and how.
func (r *running) wait(within time.Duration) (ended bool, err error) {
	select {
	case err := <-r.done:
		return true, err
	case <-time.After(within):
		return false, nil
	}
}

// output is what the process has written so far.
func (r *running) output() string { return r.out.String() }

// kill sends SIGKILL and reaps the process.
func (r *running) kill() {
	_ = syscall.Kill(r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// journalPath is the node's pending apply journal.
func (h *labHost) journalPath() string {
	return filepath.Join(h.state, "apply", "host", "journal.json")
}

// waitJournal waits until the node's journal exists, polling often.
func (h *labHost) waitJournal(r *running, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(h.journalPath()); err == nil {
			return true
		}
		select {
		case err := <-r.done:
			r.done <- err
			return false
		default:
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// waitDump waits until the node's dump is want, at most until deadline,
// and returns the last dump.
func (h *labHost) waitDump(want string, deadline time.Time) string {
	for {
		got := h.dump()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestApplyLockout applies, with --confirm 3s, a site whose firewall drops
// the admin's SSH, and kills ztwizard with SIGKILL at once: right after it
// starts, as soon as its journal exists, and as soon as it reports the
// deadline. Each time the detached watchdog (or nothing having changed yet)
// leaves the previous ruleset, sshd drop-in and the whole host as before
// the apply within the deadline and a small margin, and the admin gets in.
func TestApplyLockout(t *testing.T) {
	l := newLab(t, false)
	site := l.writeSite("site.yaml", steps.ExampleYAML)
	locked := l.writeSite("lockout.yaml", siteVariant(t, "admin_cidrs: [192.168.10.0/24]", "admin_cidrs: [192.168.20.0/24]"))
	l.prepareState(site, locked)
	l.addBridge()
	db := l.addNode("db", []string{"192.168.1.100/24"}, []string{"192.168.10.0/24"})
	admin := l.addHost("admin", []string{"192.168.10.5/24"}, []string{"192.168.1.0/24"})
	db.startSSHD()
	db.apply(site, "--no-confirm")
	const ssh = "192.168.1.100:22"
	if got := admin.probeUntil(ssh, reachOpen, 5*time.Second); got != reachOpen {
		t.Fatalf("admin -> db:22 after the first apply: %s", got)
	}
	before := db.dump()
	ruleset := db.must("nft", "list", "ruleset")
	dropInPath := filepath.Join(db.etc, "ssh/sshd_config.d/50-ztwizard.conf")
	dropIn, err := os.ReadFile(dropInPath)
	if err != nil {
		t.Fatal(err)
	}

	const window, margin = 3 * time.Second, 3 * time.Second
	for _, when := range []string{"right after start", "once the journal exists", "once it reports the deadline"} {
		start := time.Now()
		r := db.startZtw("-c", locked, "apply", "--node", "db", "--confirm", window.String())
		switch when {
		case "once the journal exists":
			if !db.waitJournal(r, 10*time.Second) {
				t.Fatalf("%s: no journal appeared: %s", when, r.output())
			}
		case "once it reports the deadline":
			deadline := time.After(10 * time.Second)
		wait:
			for {
				select {
				case line := <-r.line:
					if strings.HasPrefix(line, "confirm before ") {
						break wait
					}
				case <-deadline:
					t.Fatalf("%s: no deadline reported: %s", when, r.output())
				}
			}
		}
		r.kill()
		if when == "once it reports the deadline" {
			if got := admin.probe(ssh, probeTimeout); got != reachDropped {
				t.Errorf("%s: within the window admin -> db:22 is %s: the new firewall is not in place", when, got)
			}
		}
		got := db.waitDump(before, start.Add(window+margin))
		if got != before {
			t.Fatalf("%s: %s after the start the host is not as before:\n%s", when, time.Since(start).Round(time.Millisecond), testenv.DiffLines(before, got))
		}
		t.Logf("%s: host restored %s after the start", when, time.Since(start).Round(time.Millisecond))
		if now := db.must("nft", "list", "ruleset"); now != ruleset {
			t.Errorf("%s: ruleset not restored", when)
		}
		if now, _ := os.ReadFile(dropInPath); !bytes.Equal(now, dropIn) {
			t.Errorf("%s: sshd drop-in not restored", when)
		}
		if got := admin.probeUntil(ssh, reachOpen, 5*time.Second); got != reachOpen {
			t.Errorf("%s: admin -> db:22 after the rollback: %s", when, got)
		}
		// An apply killed before its watchdog started changed nothing,
		// but its journal is still there: rollback closes it.
		if rb := db.ztw("rollback"); rb.code != 0 && !strings.Contains(rb.stderr, "no apply is pending") {
			t.Errorf("%s: rollback: %+v", when, rb)
		}
		if st := db.ztw("status"); strings.Contains(st.stdout, "PENDING") || strings.Contains(st.stdout, "INTERRUPTED") {
			t.Errorf("%s: status after the rollback:\n%s", when, st.stdout)
		}
		if got := db.dump(); got != before {
			t.Fatalf("%s: after `ztwizard rollback`:\n%s", when, testenv.DiffLines(before, got))
		}
	}
}

// sitesLab is a lab holding the named sites of sitesABC, as a.yaml,
// b.yaml, ..., and the state of all of them, and their fresh dumps (see
// freshDumps).
func sitesLab(t *testing.T, names ...string) (l *lab, sites, want map[string]string) {
	t.Helper()
	l = newLab(t, false)
	abc := sitesABC(t)
	sites = map[string]string{}
	var paths []string
	for _, name := range names {
		sites[name] = l.writeSite(strings.ToLower(name)+".yaml", abc[name])
		paths = append(paths, sites[name])
	}
	l.prepareState(paths...)
	return l, sites, freshDumps(t, l, sites)
}

// freshDumps applies each site to node db in fresh namespaces of its own
// and returns each one's dump, with a fresh node's dump before any apply
// under "".
func freshDumps(t *testing.T, l *lab, sites map[string]string) map[string]string {
	t.Helper()
	empty := l.addNodeAs("fresh", "db", nil, nil)
	dumps := map[string]string{"": empty.dump()}
	for _, name := range slices.Sorted(maps.Keys(sites)) {
		n := l.addNodeAs("fresh"+name, "db", nil, nil)
		n.apply(sites[name], "--no-confirm")
		dumps[name] = n.dump()
	}
	for a, da := range dumps {
		for b, dbb := range dumps {
			if a < b && da == dbb {
				t.Fatalf("sites %q and %q leave the same host: the test cannot tell them apart", a, b)
			}
		}
	}
	return dumps
}

// newRand is a random source whose seed the test logs.
func newRand(t *testing.T) *mrand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return mrand.New(mrand.NewPCG(seed, 0))
}

// TestApplyKilledHalfway kills `ztwizard apply` with SIGKILL at random
// points (from its start, or once its journal exists), and twice while it
// is stopped with its journal written, moving
// node db between an empty host and sites A and B. The next `apply`
// (then the host is that of a fresh apply) or `rollback` (then it is as
// before the killed apply, or as after it if it had finished) leaves the
// host in one consistent state: its dump equals one of those.
func TestApplyKilledHalfway(t *testing.T) {
	l, sites, want := sitesLab(t, "A", "B")
	name := func(s string) string { return cmp.Or(s, "empty") }
	rng := newRand(t)

	// When, after its start, each kind of apply writes its journal and when
	// it ends: the kills aim between the two, where there is something to
	// undo.
	type window struct{ journal, end time.Duration }
	windows := map[string]window{}
	for _, path := range [][]string{{"", "A", "B", "A"}, {"", "B"}} {
		calib := l.addNodeAs("calib"+path[1], "db", nil, nil)
		for i, s := range path[1:] {
			r := calib.startZtw("-c", sites[s], "apply", "--node", "db", "--no-confirm")
			start := time.Now()
			if !calib.waitJournal(r, 10*time.Second) {
				t.Fatalf("apply of %s wrote no journal: %s", s, r.output())
			}
			w := window{journal: time.Since(start)}
			if ok, err := r.wait(testenv.CmdTimeout); !ok || err != nil {
				t.Fatalf("apply of %s: %v: %s", s, err, r.output())
			}
			w.end = time.Since(start)
			windows[path[i]+">"+s] = w
		}
	}
	t.Logf("journal written and apply ended, after the start: %v", windows)

	db := l.addNode("db", nil, nil)
	cur := ""
	for i := range 16 {
		target := "A"
		if cur == "A" || cur == "" && rng.IntN(2) == 0 {
			target = "B"
		}
		r := db.startZtw("-c", sites[target], "apply", "--node", "db", "--no-confirm")
		// caught waits for the apply's journal. An apply may finish
		// before its journal is seen: then the host is at target, and
		// an apply the other way is tried (at most 20 times).
		caught := func() {
			for tries := 0; !db.waitJournal(r, 10*time.Second); tries++ {
				if ok, err := r.wait(testenv.CmdTimeout); !ok || err != nil || tries == 20 {
					t.Fatalf("attempt %d: no journal appeared: %v: %s", i, err, r.output())
				}
				cur, target = target, map[string]string{"A": "B", "B": "A"}[target]
				r = db.startZtw("-c", sites[target], "apply", "--node", "db", "--no-confirm")
			}
		}
		var how string
		if i < 2 {
			caught()
			_ = syscall.Kill(r.cmd.Process.Pid, syscall.SIGSTOP)
			if st := db.ztw("status"); !strings.Contains(st.stdout, fmt.Sprintf("INTERRUPTED apply of node db (pid %d", r.cmd.Process.Pid)) {
				t.Errorf("attempt %d: status while the apply is stopped:\n%s", i, st.stdout)
			}
			how = "stopped with its journal written, then killed"
		} else if w := windows[cur+">"+target]; i%2 == 0 {
			// Somewhere in the steps after the journal.
			caught()
			w = windows[cur+">"+target]
			delay := time.Duration(rng.Int64N(int64(w.end - w.journal + time.Millisecond)))
			time.Sleep(delay)
			how = "killed " + delay.Round(time.Millisecond).String() + " after its journal appeared"
		} else {
			// Anywhere, from its start to a little after its end.
			delay := time.Duration(rng.Int64N(int64(w.end + 10*time.Millisecond)))
			time.Sleep(delay)
			how = "killed " + delay.Round(time.Millisecond).String() + " after its start"
		}
		r.kill()
		_, statErr := os.Stat(db.journalPath())
		journal := statErr == nil

		action := []string{"apply", "rollback"}[rng.IntN(2)]
		var res result
		if action == "apply" {
			res = db.ztw("-c", sites[target], "apply", "--node", "db", "--no-confirm")
		} else {
			res = db.ztw("rollback")
		}
		got := db.dump()
		t.Logf("attempt %d: %s -> %s %s (journal left: %v); %s: exit %d", i, name(cur), target, how, journal, action, res.code)
		allowed := []string{target}
		switch {
		case action == "apply" && res.code != 0:
			t.Fatalf("attempt %d: apply after the kill: %+v", i, res)
		case action == "rollback" && res.code == 0:
			allowed = []string{cur} // the journal was undone
		case action == "rollback" && strings.Contains(res.stderr, "no apply is pending"):
			allowed = []string{cur, target} // killed before its journal, or after it finished
		case action == "rollback":
			t.Fatalf("attempt %d: rollback after the kill: %+v", i, res)
		}
		matched := slices.IndexFunc(allowed, func(s string) bool { return want[s] == got })
		if matched < 0 {
			t.Fatalf("attempt %d: after %s the host is in none of the states %q; against %s:\n%s",
				i, action, allowed, name(allowed[0]), testenv.DiffLines(want[allowed[0]], got))
		}
		cur = allowed[matched]
		if _, err := os.Stat(db.journalPath()); err == nil {
			t.Fatalf("attempt %d: a journal is left after %s", i, action)
		}
	}

	// The first apply on a host starts the userspace device: kill it
	// there, on hosts of their own, and roll back to an empty host.
	w := windows[">A"]
	for i := range 4 {
		host := l.addNodeAs(fmt.Sprintf("first%d", i), "db", nil, nil)
		r := host.startZtw("-c", sites["A"], "apply", "--node", "db", "--no-confirm")
		if !host.waitJournal(r, 10*time.Second) {
			t.Fatalf("first apply %d: no journal appeared: %s", i, r.output())
		}
		delay := time.Duration(rng.Int64N(int64(w.end - w.journal + time.Millisecond)))
		time.Sleep(delay)
		r.kill()
		_, statErr := os.Stat(host.journalPath())
		res := host.ztw("rollback")
		t.Logf("first apply %d: killed %s after its journal appeared (journal left: %v); rollback: exit %d",
			i, delay.Round(time.Millisecond), statErr == nil, res.code)
		wantState := ""
		if res.code != 0 {
			wantState = "A"
		}
		if got := host.dump(); got != want[wantState] {
			t.Fatalf("first apply %d: after the rollback (exit %d) the host is not %s:\n%s", i, res.code, name(wantState), testenv.DiffLines(want[wantState], got))
		}
	}
}

// TestApplyTransitions applies sites A, B and C to one node in a random
// order (twice each, each round shuffled): after every apply the host's
// dump equals that of a fresh apply of the same site in fresh namespaces.
// Then the userspace device is killed, and the next apply restores it.
func TestApplyTransitions(t *testing.T) {
	l, sites, want := sitesLab(t, "A", "B", "C")
	db := l.addNode("db", nil, nil)
	rng := newRand(t)
	var order []string
	for range 2 {
		round := []string{"A", "B", "C"}
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		order = append(order, round...)
	}
	t.Logf("order %v", order)
	for i, s := range order {
		r := db.apply(sites[s], "--no-confirm")
		if i > 0 && order[i-1] == s {
			if !strings.Contains(r.stdout, "node db: no changes") {
				t.Errorf("step %d: %s again changed something:\n%s", i, s, r.stdout)
			}
		}
		if got := db.dump(); got != want[s] {
			t.Fatalf("step %d (%v): after %s the host differs from a fresh apply of %s:\n%s", i, order[:i+1], s, s, testenv.DiffLines(want[s], got))
		}
	}

	// A device that died (its link gone, its socket left behind) is
	// started again by the next apply of the same site.
	last := order[len(order)-1]
	pid := db.devicePID()
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); processExists(pid) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(db.run, "wireguard", "zt0.sock")); err != nil {
		t.Fatalf("the killed device left no socket behind: %v", err)
	}
	r := db.apply(sites[last], "--no-confirm")
	if !strings.Contains(r.stdout, "firewall unchanged, wireguard replaced") {
		t.Errorf("apply after the device died:\n%s", r.stdout)
	}
	if got := db.dump(); got != want[last] {
		t.Fatalf("after the device died and %s was applied again:\n%s", last, testenv.DiffLines(want[last], got))
	}
}

// devicePID is the pid of the node's userspace WireGuard device.
func (h *labHost) devicePID() int {
	h.lab.t.Helper()
	for _, pid := range h.pids() {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.HasSuffix(string(data), "\x00wg\x00device\x00zt0\x00") {
			return pid
		}
	}
	h.lab.t.Fatalf("%s: no userspace WireGuard device runs", h.name)
	return 0
}

// processExists tells whether process pid exists (a zombie counts).
func processExists(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestApplyIdempotentAndSerialised: a second apply of the same site says
// "no changes", rewrites no file and sends nftables nothing (`nft monitor`
// sees no event, handles are unchanged); two applies at once take turns;
// an apply that holds the state lock makes another one with
// --lock-wait 200ms fail naming its pid; a hang-up does not stop an apply
// half-way; an apply waiting for confirmation refuses another until
// `ztwizard confirm`.
func TestApplyIdempotentAndSerialised(t *testing.T) {
	l, sites, want := sitesLab(t, "A", "B")
	db := l.addNode("db", nil, nil)
	db.apply(sites["A"], "--no-confirm")

	// Idempotence.
	times, handles, before := testenv.Mtimes(t, db.etc), db.must("nft", "-a", "list", "ruleset"), db.dump()
	monCtx, stopMon := context.WithCancel(context.Background())
	defer stopMon()
	mon := db.command(monCtx, "nft", "monitor")
	var events testenv.Buffer
	mon.Stdout = &events
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	go mon.Wait()
	time.Sleep(300 * time.Millisecond) // let it subscribe
	for _, args := range [][]string{
		{"-c", sites["A"], "apply", "--node", "db", "--no-confirm"},
		{"-c", sites["A"], "apply", "--node", "db", "--dry-run"},
		{"-c", sites["A"], "plan", "--node", "db"},
	} {
		if r := db.ztw(args...); r.code != 0 || r.stdout != "applying node db to /\nnode db: no changes\n" && r.stdout != "node db: no changes\n" {
			t.Errorf("%v: %+v", args[2:], r)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if ev := events.String(); ev != "" {
		t.Errorf("nft monitor saw events during the second apply:\n%s", ev)
	}
	if got := db.must("nft", "-a", "list", "ruleset"); got != handles {
		t.Errorf("the table was replaced: handles differ:\n%s", testenv.DiffLines(handles, got))
	}
	for p, m := range testenv.Mtimes(t, db.etc) {
		if !m.Equal(times[p]) {
			t.Errorf("%s rewritten by the second apply", p)
		}
	}
	if got := db.dump(); got != before {
		t.Errorf("the second apply changed the host:\n%s", testenv.DiffLines(before, got))
	}

	// Two applies of B at once: one applies, the other waits for the lock
	// and then finds nothing to do.
	r1 := db.startZtw("-c", sites["B"], "apply", "--node", "db", "--no-confirm")
	r2 := db.startZtw("-c", sites["B"], "apply", "--node", "db", "--no-confirm")
	applied := 0
	for _, r := range []*running{r1, r2} {
		ok, err := r.wait(testenv.CmdTimeout)
		if !ok || err != nil {
			t.Fatalf("concurrent apply: %v (ended %v): %s", err, ok, r.output())
		}
		if strings.Contains(r.output(), "\napplied: ") {
			applied++
		} else if !strings.Contains(r.output(), "node db: no changes") {
			t.Errorf("concurrent apply neither applied nor found nothing to do:\n%s", r.output())
		}
	}
	if applied != 1 {
		t.Errorf("%d of the two concurrent applies applied, want 1", applied)
	}
	if got := db.dump(); got != want["B"] {
		t.Fatalf("after two concurrent applies of B:\n%s", testenv.DiffLines(want["B"], got))
	}
	time.Sleep(200 * time.Millisecond)
	if events.String() == "" {
		t.Error("nft monitor saw nothing of the apply of B: it cannot prove the no-op apply sent nothing")
	}
	stopMon()

	// An apply that holds the lock.
	holder := db.startZtw("-c", sites["A"], "apply", "--node", "db", "--no-confirm")
	if !db.waitJournal(holder, 10*time.Second) {
		t.Fatalf("no journal appeared: %s", holder.output())
	}
	pid := holder.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	for _, args := range [][]string{
		{"-c", sites["A"], "apply", "--node", "db", "--no-confirm"},
		{"confirm"},
		{"rollback"},
	} {
		start := time.Now()
		r := db.ztw(append([]string{"--lock-wait", "200ms"}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("is in use by another ztwizard (pid %d)", pid)) {
			t.Errorf("%s while another apply holds the lock: %+v", args[len(args)-1], r)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s waited %s for a 200ms lock wait", args[len(args)-1], d)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if ok, err := holder.wait(testenv.CmdTimeout); !ok || err != nil {
		t.Fatalf("the stopped apply, continued: %v: %s", err, holder.output())
	}
	if got := db.dump(); got != want["A"] {
		t.Fatalf("after the stopped apply of A finished:\n%s", testenv.DiffLines(want["A"], got))
	}

	// A hang-up (the SSH session dropped) does not stop an apply half-way.
	hup := db.startZtw("-c", sites["B"], "apply", "--node", "db", "--no-confirm")
	if !db.waitJournal(hup, 10*time.Second) {
		t.Fatalf("no journal appeared: %s", hup.output())
	}
	_ = syscall.Kill(hup.cmd.Process.Pid, syscall.SIGHUP)
	if ok, err := hup.wait(testenv.CmdTimeout); !ok || err != nil {
		t.Fatalf("apply after SIGHUP: %v: %s", err, hup.output())
	}
	if got := db.dump(); got != want["B"] {
		t.Fatalf("after an apply of B that was hung up on:\n%s", testenv.DiffLines(want["B"], got))
	}

	// An apply waiting for confirmation.
	r := db.apply(sites["A"], "--confirm", "60s")
	if !strings.Contains(r.stdout, "confirm before ") {
		t.Errorf("apply --confirm 60s:\n%s", r.stdout)
	}
	second := db.ztw("-c", sites["B"], "apply", "--node", "db", "--no-confirm")
	if second.code != 2 || !strings.Contains(second.stderr, "an apply is waiting for confirmation: node db until ") {
		t.Errorf("apply while one waits for confirmation: %+v", second)
	}
	if st := db.ztw("status"); !strings.Contains(st.stdout, "PENDING apply of node db: confirm before ") {
		t.Errorf("status:\n%s", st.stdout)
	}
	if procs := db.ztwizardProcesses(); len(procs) != 2 || !strings.HasPrefix(procs[0], "rollback --state STATE --watchdog ") {
		t.Errorf("ztwizard processes while waiting for confirmation: %q, want the watchdog and the device", procs)
	}
	if c := db.ztw("confirm"); c.code != 0 || !strings.Contains(c.stdout, "confirmed the apply of node db") {
		t.Errorf("confirm: %+v", c)
	}
	if got := db.waitDump(want["A"], time.Now().Add(5*time.Second)); got != want["A"] {
		t.Fatalf("after confirm (the watchdog stopped):\n%s", testenv.DiffLines(want["A"], got))
	}
	if c := db.ztw("confirm"); c.code != 2 || !strings.Contains(c.stderr, "no apply is pending") {
		t.Errorf("a second confirm: %+v", c)
	}
}

// hubLab is a lab holding the state of a hub whose node n0 has 1,000
// peers, node trees on disk, and the arguments that apply n0's plan.
func hubLab(b *testing.B) (*lab, []string) {
	l := newLab(b, true)
	site := l.writeSite("hub.yaml", testenv.HubSite(1000, "192.168.10.0/24"))
	if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, bin, "--state", l.state, "-c", site, "render", "--node", "n0", "--out", filepath.Join(l.dir, "render")); err != nil {
		b.Fatal(err)
	}
	return l, []string{"-c", site, "apply", "--node", "n0", "--no-confirm"}
}

// mustApplyHub applies n0's plan and fails unless the output says want.
func mustApplyHub(b *testing.B, n *labHost, args []string, want string) {
	b.Helper()
	if r := n.ztw(args...); r.code != 0 || !strings.Contains(r.stdout, want) {
		b.Fatalf("apply: %+v, want %q", r, want)
	}
}

// BenchmarkApply1000Peers runs the real `ztwizard apply` for node n0 of a
// hub with 1,000 peers (a firewall set and a WireGuard interface of 1,000
// entries each) into fresh namespaces, its /etc and state on disk: files,
// one netlink batch, the userspace device started and configured, its
// addresses.
func BenchmarkApply1000Peers(b *testing.B) {
	l, args := hubLab(b)
	var n *labHost
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		n = l.addNodeAs(fmt.Sprintf("h%d", i), "n0", nil, nil)
		b.StartTimer()
		mustApplyHub(b, n, args, "firewall replaced, wireguard replaced")
	}
	b.StopTimer()
	if peers := strings.Count(n.must("wg", "show", "zt0", "peers"), "\n"); peers != 1000 {
		b.Fatalf("the device has %d peers, want 1000", peers)
	}
}

// BenchmarkReapply1000Peers re-applies the plan of BenchmarkApply1000Peers
// to a node that has it: everything is read and compared, nothing sent.
func BenchmarkReapply1000Peers(b *testing.B) {
	l, args := hubLab(b)
	n := l.addNodeAs("h", "n0", nil, nil)
	mustApplyHub(b, n, args, "firewall replaced, wireguard replaced")
	for b.Loop() {
		mustApplyHub(b, n, args, "node n0: no changes")
	}
}

// TestApplyDryRunAndRoot: `plan` and `apply --dry-run` print the same
// diff (files, the firewall as nft text, the WireGuard interface; private
// keys named, not shown) and change nothing; `apply --root DIR` writes the
// files into DIR only, again and again with no change, touching neither
// the host's /etc nor its kernel.
func TestApplyDryRunAndRoot(t *testing.T) {
	l := newLab(t, false)
	site := l.writeSite("site.yaml", steps.ExampleYAML)
	l.prepareState(site)
	db := l.addNode("db", nil, nil)
	empty := db.dump()

	plan := db.ztw("-c", site, "plan", "--node", "db")
	dry := db.ztw("-c", site, "apply", "--node", "db", "--dry-run")
	if plan.code != 0 || dry.code != 0 || plan.stdout != dry.stdout {
		t.Fatalf("plan and apply --dry-run differ:\n%+v\n%+v", plan, dry)
	}
	key, err := os.ReadFile(filepath.Join(l.dir, "render", "site.yaml", "db", "etc/ztwizard/wireguard/private.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- /dev/null\n+++ /etc/mysql/mariadb.conf.d/90-ztwizard.cnf\n",
		"--- /etc/ztwizard/wireguard/private.key\n+++ /etc/ztwizard/wireguard/private.key\n@@ secret (mode 0600): new, content not shown @@\n",
		"--- /dev/null\n+++ nft: table inet ztwizard (plan)\n",
		"wireguard zt0:\n  + interface (listen port 51820, addresses 10.100.0.1/24)\n",
	} {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	if strings.Contains(plan.stdout, strings.TrimSpace(string(key))) {
		t.Error("plan shows the WireGuard private key")
	}
	if got := db.dump(); got != empty {
		t.Fatalf("plan and --dry-run changed the host:\n%s", testenv.DiffLines(empty, got))
	}

	image := filepath.Join(l.dir, "image")
	r := db.ztw("-c", site, "apply", "--node", "db", "--root", image)
	if r.code != 0 || !strings.Contains(r.stdout, "files, firewall unchanged, wireguard unchanged, reloaded nothing") {
		t.Fatalf("apply --root: %+v", r)
	}
	want, err := os.ReadFile(filepath.Join(l.dir, "render", "site.yaml", "db", "etc/ssh/sshd_config.d/50-ztwizard.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(image, "etc/ssh/sshd_config.d/50-ztwizard.conf")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the sshd drop-in under --root: %v", err)
	}
	for _, args := range [][]string{
		{"-c", site, "apply", "--node", "db", "--root", image},
		{"-c", site, "plan", "--node", "db", "--root", image},
	} {
		if r := db.ztw(args...); r.code != 0 || !strings.Contains(r.stdout, "node db: no changes") {
			t.Errorf("%s again: %+v", args[2], r)
		}
	}
	if got := db.dump(); got != empty {
		t.Fatalf("apply --root changed the host:\n%s", testenv.DiffLines(empty, got))
	}

	// The site file the node carries follows the site, whatever the
	// store keeps of the last one: changed, then back.
	changedYAML := bytes.Replace(steps.ExampleYAML, []byte("192.168.1.50:51820"), []byte("192.168.1.51:51820"), 1)
	changed := l.writeSite("changed.yaml", changedYAML)
	for _, c := range []struct {
		site string
		yaml []byte
	}{{changed, changedYAML}, {site, steps.ExampleYAML}, {changed, changedYAML}} {
		if r := db.ztw("-c", c.site, "apply", "--node", "db", "--root", image); r.code != 0 || strings.Contains(r.stdout, "no changes") {
			t.Fatalf("apply --root of %s: %+v", c.site, r)
		}
		parsed, err := steps.Parse(c.yaml, c.site)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := parsed.Marshal()
		if got, err := os.ReadFile(filepath.Join(image, steps.SiteFilePath)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("after apply --root of %s the node's site file is not that site's (%v)", c.site, err)
		}
	}
}

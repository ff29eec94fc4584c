package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/host"
	"ztwizard/steps/testenv"
)

// fakeNode is a booted node as the self-check sees it.
type fakeNode struct {
	nftInput   string
	firewallAt string // ActiveEnterTimestampMonotonic of the firewall
	networkdAt string // InactiveExitTimestampMonotonic of systemd-networkd
	sshdT      string
	sshActive  string
	device     *wgtypes.Device
}

func (f *fakeNode) run(_ context.Context, name string, args ...string) ([]byte, error) {
	cmd := name + " " + strings.Join(args, " ")
	switch {
	case strings.HasPrefix(cmd, "nft list chain inet ztwizard input"):
		if f.nftInput == "" {
			return nil, errors.New("Error: No such file or directory")
		}
		return []byte(f.nftInput), nil
	case strings.Contains(cmd, "ActiveEnterTimestampMonotonic --value "+steps.FirewallUnit):
		return []byte(f.firewallAt + "\n"), nil
	case strings.Contains(cmd, "InactiveExitTimestampMonotonic --value systemd-networkd.service"):
		return []byte(f.networkdAt + "\n"), nil
	case strings.Contains(cmd, "network-pre.target"):
		return []byte("0\n"), nil
	case cmd == "sshd -T":
		return []byte(f.sshdT), nil
	case cmd == "systemctl is-active ssh.service":
		return []byte(f.sshActive + "\n"), nil
	}
	return nil, fmt.Errorf("unexpected command %q", cmd)
}

func (f *fakeNode) dev(name string) (*wgtypes.Device, error) {
	if f.device == nil || f.device.Name != name {
		return nil, errors.New("file does not exist")
	}
	return f.device, nil
}

func TestSelfCheck(t *testing.T) {
	a := exampleAuthority(t)
	plan, hk := examplePlan(t, a, "db")
	c, err := NodeContent(plan, hk, Network{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if _, err := host.WriteFiles(root, c.Files); err != nil {
		t.Fatal(err)
	}
	readKey := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(root, p)) }
	q, err := parseWGQuick(fileContent(t, c, "/etc/wireguard/zt0.conf"), readKey)
	if err != nil {
		t.Fatal(err)
	}
	// One parser: a line it does not understand is an error, not skipped.
	bad := append(fileContent(t, c, "/etc/wireguard/zt0.conf"), []byte("\n[Peer]\nPublicKey = not a key\n")...)
	if _, err := parseWGQuick(bad, readKey); err == nil || !strings.Contains(err.Error(), "line") {
		t.Errorf("a bad line was read as fine: %v", err)
	}
	if q.address.String() != "10.100.0.1/24" || q.port != 51820 || len(q.peers) != 1 || q.peers[0].name != "web" || q.peers[0].allowed[0].String() != "10.100.0.2/32" {
		t.Fatalf("wg-quick file read as %+v", q)
	}
	webKey, _ := wgtypes.ParseKey(q.peers[0].publicKey)
	_, mesh2, _ := net.ParseCIDR("10.100.0.2/32")
	good := func() *fakeNode {
		return &fakeNode{
			nftInput:   "table inet ztwizard {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n",
			firewallAt: "9560000",
			networkdAt: "10170000",
			sshdT:      "port 22\ntrustedusercakeys /etc/ssh/ztwizard_user_ca.pub\nhostcertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\n",
			sshActive:  "active",
			device: &wgtypes.Device{Name: "zt0", ListenPort: 51820, PrivateKey: *plan.WireGuard.Config.PrivateKey,
				Peers: []wgtypes.Peer{{PublicKey: webKey, AllowedIPs: []net.IPNet{*mesh2}}}},
		}
	}
	tests := []struct {
		name  string
		spoil func(f *fakeNode)
		root  func(root string)
		want  string
	}{
		{name: "ok", want: "ZTWIZARD-SELFCHECK ok node=db firewall=drop,loaded@9.56s<networkd@10.17s wireguard=zt0@10.100.0.1:web sshd=user-ca,host-cert db=main:mariadb@10.100.0.1:3306 root="},
		{name: "no table", spoil: func(f *fakeNode) { f.nftInput = "" }, want: "firewall=FAIL"},
		{name: "accepting", spoil: func(f *fakeNode) { f.nftInput = strings.Replace(f.nftInput, "drop", "accept", 1) }, want: "does not drop by default"},
		{name: "after the network", spoil: func(f *fakeNode) { f.firewallAt = "11000000" }, want: "after the network"},
		{name: "no interface", spoil: func(f *fakeNode) { f.device = nil }, want: "wireguard=FAIL"},
		{name: "no peer", spoil: func(f *fakeNode) { f.device.Peers = nil }, want: "peer web is not on zt0"},
		{name: "no key", spoil: func(f *fakeNode) { f.device.PrivateKey = wgtypes.Key{} }, want: "has no private key"},
		{name: "sshd without CA", spoil: func(f *fakeNode) { f.sshdT = "port 22\n" }, want: "sshd does not trust"},
		{name: "sshd down", spoil: func(f *fakeNode) { f.sshActive = "failed" }, want: "ssh.service is failed"},
		{name: "bind file changed", root: func(root string) {
			writeFile(t, filepath.Join(root, steps.MariaDBConfPath), "[mysqld]\nbind-address = 0.0.0.0\n", 0o644)
		}, want: "differs from the plan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := root
			if tt.root != nil {
				r = t.TempDir()
				host.WriteFiles(r, c.Files)
				tt.root(r)
			}
			f := good()
			if tt.spoil != nil {
				tt.spoil(f)
			}
			rep := SelfCheck{Root: r, Site: a.Site, Node: "db", Run: f.run, Device: f.dev}.Check(context.Background())
			line := rep.Line()
			if !strings.Contains(line, tt.want) {
				t.Fatalf("line %q lacks %q", line, tt.want)
			}
			if (tt.name == "ok") != rep.OK() || strings.Contains(line, "\n") {
				t.Fatalf("ok %v: %s", rep.OK(), line)
			}
		})
	}

	// Where the image carries the engine, the self-check talks to it on
	// the mesh address: MariaDB's greeting passes, anything else fails.
	engine := t.TempDir()
	host.WriteFiles(engine, c.Files)
	writeFile(t, filepath.Join(engine, "lib/systemd/system/mariadb.service"), "[Unit]\n", 0o644)
	for _, tc := range []struct {
		name, greeting, want string
		ok                   bool
	}{
		{"mariadb greets", "\x4a\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB", "db=main:mariadb@10.100.0.1:3306 ", true},
		{"mariadb refuses this host", "\x16\x00\x00\x00\xff\x6a\x04Host is not allowed", "db=main:mariadb@10.100.0.1:3306 ", true},
		{"something else listens", "ztwizard db\n", "not MariaDB's protocol 10 handshake", false},
		{"nothing listens", "", "db=FAIL", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dialed string
			dial := func(ctx context.Context, addr string) (net.Conn, error) {
				dialed = addr
				if tc.greeting == "" {
					return nil, errors.New("connection refused")
				}
				server, client := net.Pipe()
				go func() { server.Write([]byte(tc.greeting)); server.Close() }()
				return client, nil
			}
			f := good()
			rep := SelfCheck{Root: engine, Site: a.Site, Node: "db", Run: f.run, Device: f.dev, Dial: dial}.Check(context.Background())
			if line := rep.Line(); !strings.Contains(line, tc.want) || rep.OK() != tc.ok {
				t.Errorf("line %q: want %q, ok %v", line, tc.want, tc.ok)
			}
			if dialed != "10.100.0.1:3306" {
				t.Errorf("dialed %q, want the mesh address", dialed)
			}
		})
	}

	// A golden image without a seed: the firewall and sshd only.
	f := good()
	rep := SelfCheck{Root: t.TempDir(), Site: a.Site, Node: "", Run: f.run, Device: f.dev}.Check(context.Background())
	// The empty root has no user CA file: sshd fails, nothing else is checked.
	if line := rep.Line(); rep.OK() || !strings.HasPrefix(line, "ZTWIZARD-SELFCHECK FAIL node=- firewall=drop") || strings.Contains(line, "wireguard=") {
		t.Fatalf("golden line %q", line)
	}
}

func fileContent(t *testing.T, c *Content, p string) []byte {
	t.Helper()
	f, ok := fileAt(c, p)
	if !ok {
		t.Fatalf("no %s", p)
	}
	return f.Content
}

func TestListenAndProbe(t *testing.T) {
	// A free port that nothing listens on, and one the listener takes.
	closed := freePort(t)
	open := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log testenv.Buffer
	done := make(chan error, 1)
	go func() { done <- Listen(ctx, open, "ztwizard db", &log) }()
	line, ok := Probe{Root: t.TempDir(), Open: []string{open}, Closed: []string{closed}, Timeout: 10 * time.Second}.Do(ctx)
	if !ok || line != fmt.Sprintf("ZTWIZARD-PROBE ok open=%s[ztwizard db] closed=%s[refused]", open, closed) {
		t.Fatalf("probe: %s", line)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "ZTWIZARD-LISTEN listening on "+open) || !strings.Contains(log.String(), "ZTWIZARD-LISTEN accepted "+open+" from 127.0.0.1:") {
		t.Fatalf("listen log:\n%s", log.String())
	}
	line, ok = Probe{Root: t.TempDir(), Open: []string{closed}, Closed: nil, Timeout: time.Second}.Do(context.Background())
	if ok || !strings.HasPrefix(line, "ZTWIZARD-PROBE FAIL open="+closed+"[FAIL]") {
		t.Fatalf("probe of a closed port: %s", line)
	}
}

// freePort is a free loopback address.
func freePort(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

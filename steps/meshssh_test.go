package steps

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

// TestValidateMeshSSH: ssh.mesh_access is admin_nodes (or empty) or all;
// ssh.admin_nodes names nodes of the site, each once, and only with
// admin_nodes access.
func TestValidateMeshSSH(t *testing.T) {
	tests := []struct {
		name   string
		access string
		nodes  []string
		want   string // "" for valid
	}{
		{name: "default", want: ""},
		{name: "admin node", access: "", nodes: []string{"web"}},
		{name: "admin nodes named", access: MeshSSHAdminNodes, nodes: []string{"web", "db"}},
		{name: "all", access: MeshSSHAll},
		{name: "unknown access", access: "everyone", want: `ssh.mesh_access: "everyone" is not "admin_nodes" or "all"`},
		{name: "unknown node", nodes: []string{"web", "jump"}, want: `ssh.admin_nodes[1]: "jump" is not a node of the site`},
		{name: "repeated node", nodes: []string{"web", "web"}, want: `ssh.admin_nodes[1]: "web" repeats ssh.admin_nodes[0]`},
		{name: "nodes with all", access: MeshSSHAll, nodes: []string{"web"}, want: `ssh.admin_nodes: ["web"]: with ssh.mesh_access "all"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			site := Example()
			site.SSH.MeshAccess, site.SSH.AdminNodes = tc.access, tc.nodes
			err := site.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// meshLab is three hosts of a mesh in network namespaces, each with a link
// called zt0 (as the WireGuard link is) on one bridge: the firewall's rules
// see the traffic as WireGuard would hand it over.
type meshLab struct {
	t  *testing.T
	ns map[string]string // node -> namespace
}

func newMeshLab(t *testing.T, addrs map[string]string) *meshLab {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.Need(t, "ip", "nft")
	sw := testenv.NewNetns(t, "zsw")
	testenv.MustRun(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	testenv.MustRun(t, "ip", "-n", sw, "link", "set", "br0", "up")
	l := &meshLab{t: t, ns: map[string]string{}}
	for node, addr := range addrs {
		ns := testenv.NewNetns(t, "zm")
		port := testenv.Unique(t, "zp")
		testenv.MustRun(t, "ip", "link", "add", WireGuardName, "netns", ns, "type", "veth", "peer", "name", port, "netns", sw)
		testenv.MustRun(t, "ip", "-n", sw, "link", "set", port, "master", "br0", "up")
		testenv.MustRun(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", WireGuardName)
		testenv.MustRun(t, "ip", "-n", ns, "link", "set", WireGuardName, "up")
		l.ns[node] = ns
	}
	return l
}

// listen accepts (and closes) TCP connections on addr in node's namespace.
func (l *meshLab) listen(node, addr string) {
	l.t.Helper()
	var ln net.Listener
	if err := testenv.InNetns(l.ns[node], func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

// probe connects from node to addr: "open", "refused" or "dropped" (no
// answer within the timeout).
func (l *meshLab) probe(node, addr string) string {
	l.t.Helper()
	var c net.Conn
	err := testenv.InNetns(l.ns[node], func() (err error) {
		c, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	})
	var ne net.Error
	switch {
	case err == nil:
		_ = c.Close()
		return "open"
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "dropped"
	}
	l.t.Fatalf("%s -> %s: %v", node, addr, err)
	return ""
}

// firewall loads node's rendered ruleset for site into its namespace.
func (l *meshLab) firewall(site *Site, node string) {
	l.t.Helper()
	addrs, err := site.Addresses(nil)
	if err != nil {
		l.t.Fatal(err)
	}
	tbl, err := FirewallFor(site, node, addrs, WireGuardName)
	if err != nil {
		l.t.Fatal(err)
	}
	script := filepath.Join(l.t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(script, []byte(tbl.Script()), 0o600); err != nil {
		l.t.Fatal(err)
	}
	testenv.MustRun(l.t, "ip", "netns", "exec", l.ns[node], "nft", "-f", script)
}

// TestMeshSSHOnlyFromAdminNodes loads web's real ruleset in a namespace
// lab of web, db and an admin node on one mesh link: by default the
// database node cannot open port 22 on web over the mesh while the admin
// node can; with ssh.mesh_access "all" every node can again.
func TestMeshSSHOnlyFromAdminNodes(t *testing.T) {
	site := Example()
	site.Nodes = append(site.Nodes, Node{Name: "adm", Address: "10.100.0.3", Peers: []string{"db", "web"}})
	site.SSH.AdminNodes = []string{"adm"}
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	lab := newMeshLab(t, map[string]string{"db": "10.100.0.1", "web": "10.100.0.2", "adm": "10.100.0.3"})
	lab.listen("web", "0.0.0.0:22")
	lab.listen("web", "0.0.0.0:8080")
	const webSSH = "10.100.0.2:22"

	check := func(phase string, want map[string]string) {
		t.Helper()
		for from, w := range want {
			if got := lab.probe(from, webSSH); got != w {
				t.Errorf("%s: %s -> web %s: %s, want %s", phase, from, webSSH, got, w)
			}
		}
	}
	check("no firewall", map[string]string{"db": "open", "adm": "open"})
	lab.firewall(site, "web")
	check("default (admin_nodes)", map[string]string{"db": "dropped", "adm": "open"})
	if got := lab.probe("adm", "10.100.0.2:8080"); got != "dropped" {
		t.Errorf("adm -> web:8080: %s, want dropped (an admin node gets SSH, not everything)", got)
	}

	all := site.Clone()
	all.SSH.MeshAccess, all.SSH.AdminNodes = MeshSSHAll, nil
	if err := all.Validate(); err != nil {
		t.Fatal(err)
	}
	lab.firewall(all, "web")
	check("mesh_access all", map[string]string{"db": "open", "adm": "open"})
}

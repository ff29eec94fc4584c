package pull

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// TestPullOverMeshLab: the CA host db and the node web in network
// namespaces on one mesh link (zt0, as WireGuard hands traffic over). db
// runs its real ruleset and a real nginx with its rendered publish server;
// web pulls the CRL and KRL from db's mesh address and installs them.
// Without ca.host, db's ruleset drops the port; other ports stay dropped.
func TestPullOverMeshLab(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.Need(t, "ip", "nft")
	nginxBin := testenv.Tool(t, "nginx")
	site := steps.Example()
	site.CA.Host = "db"
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	addrs, err := site.Addresses(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The lab: a bridge, and a zt0 per host on it.
	sw := testenv.NewNetns(t, "zsw")
	testenv.MustRun(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	testenv.MustRun(t, "ip", "-n", sw, "link", "set", "br0", "up")
	ns := map[string]string{}
	for _, node := range []string{"db", "web"} {
		ns[node] = testenv.NewNetns(t, "zm")
		port := testenv.Unique(t, "zp")
		testenv.MustRun(t, "ip", "link", "add", steps.WireGuardName, "netns", ns[node], "type", "veth", "peer", "name", port, "netns", sw)
		testenv.MustRun(t, "ip", "-n", sw, "link", "set", port, "master", "br0", "up")
		testenv.MustRun(t, "ip", "-n", ns[node], "addr", "add", addrs[node].String()+"/24", "dev", steps.WireGuardName)
		testenv.MustRun(t, "ip", "-n", ns[node], "link", "set", steps.WireGuardName, "up")
		testenv.MustRun(t, "ip", "-n", ns[node], "link", "set", "lo", "up")
	}
	firewall := func(s *steps.Site) {
		t.Helper()
		tbl, err := steps.FirewallFor(s, "db", addrs, steps.WireGuardName)
		if err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(t.TempDir(), "ruleset.nft")
		os.WriteFile(script, []byte(tbl.Script()), 0o600)
		testenv.MustRun(t, "ip", "netns", "exec", ns["db"], "nft", "-f", script)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := testenv.InNetns(ns["web"], func() (err error) {
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	probe := func(addr string) string {
		c, err := dial(context.Background(), "tcp", addr)
		switch {
		case err == nil:
			c.Close()
			return "open"
		case strings.Contains(err.Error(), "refused"):
			return "refused"
		case strings.Contains(err.Error(), "timeout"):
			return "dropped"
		}
		return err.Error()
	}

	// The CA publishes.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := testCA(t, key)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(3),
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}, ca.Cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pub := t.TempDir()
	if err := Publish(pub, ca, pemCRL(der), krl(4)); err != nil {
		t.Fatal(err)
	}
	// db's nginx with its rendered publish server.
	files, _, err := steps.DistributionFiles(site, "db", addrs)
	if err != nil {
		t.Fatal(err)
	}
	var server string
	for _, f := range files {
		if f.Path == steps.PublishConfPath {
			server = strings.ReplaceAll(string(f.Content), "root "+steps.PublishDir+";", "root "+pub+";")
		}
	}
	prefix := t.TempDir()
	conf := fmt.Sprintf(`user root root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 16; }
http {
    client_body_temp_path %[1]s/cb;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, prefix, server)
	os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644)
	p := testenv.Start(t, exec.Command(nginxBin, "-c", filepath.Join(prefix, "nginx.conf"), "-p", prefix+"/",
		"-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;"), testenv.ProcOptions{Netns: ns["db"]})
	from, _ := steps.PublishURL(site, addrs)
	hostPort := strings.TrimPrefix(from, "http://")
	if err := p.WaitReady(10*time.Second, func() error {
		return testenv.InNetns(ns["db"], func() error {
			c, err := net.DialTimeout("tcp", hostPort, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}); err != nil {
		t.Fatal(err)
	}
	other := net.JoinHostPort(addrs["db"].String(), "8441")

	// Without ca.host, db's ruleset drops the port.
	plain := site.Clone()
	plain.CA.Host = ""
	firewall(plain)
	if got := probe(hostPort); got != "dropped" {
		t.Fatalf("web -> db %s without ca.host: %s, want dropped", hostPort, got)
	}
	firewall(site)
	if got := probe(hostPort); got != "open" {
		t.Fatalf("web -> db %s with ca.host: %s, want open", hostPort, got)
	}
	if got := probe(other); got != "dropped" {
		t.Fatalf("web -> db %s: %s, want dropped", other, got)
	}

	// web pulls over the mesh.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/ztwizard"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755)
	os.WriteFile(filepath.Join(root, steps.CACertPath), pemCert(ca.Cert), 0o644)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial}}
	res, err := Pull(context.Background(), Options{Root: root, From: from, Client: client, Now: time.Now()})
	if err != nil || !res.CRL || !res.KRL {
		t.Fatalf("pull over the mesh: %+v %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, steps.SSHKRLPath)); string(got) != string(krl(4)) {
		t.Fatal("the KRL installed is not the published one")
	}

	// db's nginx serves the renewed certificates under nodes/; what is not
	// published is a 404, which a pull takes as nothing to do.
	leaf := pemCert(ca.Cert)
	if err := os.MkdirAll(filepath.Join(pub, LeavesDir, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pub, LeavesDir, "web", "api"+ServerSuffix), leaf, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Fetch(context.Background(), client, from, LeafPath("web", "api"+ServerSuffix)); err != nil || string(got) != string(leaf) {
		t.Fatalf("a published certificate over the mesh: %v", err)
	}
	if _, err := Fetch(context.Background(), client, from, LeafPath("web", HostCertName)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unpublished host certificate: %v, want ErrNotFound", err)
	}
}

package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/sshca"
)

// checkWithDaemons writes a node's plan under a temporary root and has the
// programs that will read the files check them: nginx -t, sshd -t and
// nft -c.
func checkWithDaemons(t *testing.T, p *Plan) {
	t.Helper()
	var nginx []File
	for _, f := range p.Files {
		if strings.HasPrefix(f.Path, NginxConfDir+"/") || strings.HasPrefix(f.Path, EtcDir+"/") {
			nginx = append(nginx, f)
		}
	}
	if len(nginx) > 0 && hasPrefix(p.Files, NginxConfDir+"/") {
		mtlsWriteNginx(t, nginx, true).check(t)
	}

	root := t.TempDir()
	sshdWriteFiles(t, root, p.Files)
	hostKey, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := sshca.EncodePrivateKey(hostKey, "test host key", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, SSHHostKeyPath), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "sshd_config")
	if err := os.WriteFile(conf, []byte(sshdMainConf(root, 2222)), 0o644); err != nil {
		t.Fatal(err)
	}
	runCheck(t, "/usr/sbin/sshd", "-t", "-f", conf)

	script := filepath.Join(root, "nftables.nft")
	if err := os.WriteFile(script, []byte(p.Firewall.Script()), 0o644); err != nil {
		t.Fatal(err)
	}
	runCheck(t, "nft", "-c", "-f", script)
	checkWGQuick(t, p)
}

// checkWGQuick reads the node's wg-quick file back: every line must be one
// ztwizard writes (no PreUp or other command smuggled in through a field)
// and it must hold exactly the interface the plan configures.
func checkWGQuick(t *testing.T, p *Plan) {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range p.Files {
		files[f.Path] = f.Content
	}
	conf, ok := files[WireGuardConfDir+"/"+WireGuardName+".conf"]
	if !ok {
		t.Fatalf("node %s: no wg-quick file", p.Node)
	}
	got, err := ParseWGQuick(p.WireGuard.Name, conf, func(path string) ([]byte, error) {
		if data, ok := files[path]; ok {
			return data, nil
		}
		return nil, os.ErrNotExist
	})
	if err != nil {
		t.Fatalf("node %s: wg-quick file does not read back: %v\n%s", p.Node, err, conf)
	}
	if !reflect.DeepEqual(got, p.WireGuard) {
		t.Fatalf("node %s: wg-quick file reads back as\n%+v\nnot the plan's\n%+v\n%s", p.Node, got, p.WireGuard, conf)
	}
}

func hasPrefix(files []File, prefix string) bool {
	for _, f := range files {
		if strings.HasPrefix(f.Path, prefix) {
			return true
		}
	}
	return false
}

func runCheck(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// FuzzRender holds that any site that validates renders, for each node,
// files that nginx, sshd and nft accept.
func FuzzRender(f *testing.F) {
	f.Add(ExampleYAML)
	v6 := strings.NewReplacer("10.100.0.0/24", "fd00:100::/64", "10.100.0.1", "fd00:100::1", "10.100.0.2", "fd00:100::2",
		"192.168.10.0/24", "2001:db8:10::/48").Replace(string(ExampleYAML))
	f.Add([]byte(v6))
	f.Add([]byte(strings.Replace(string(ExampleYAML), "engine: mariadb, port: 3306", "engine: postgresql", 1)))
	f.Add([]byte("version: 1\nsite: tiny\nwireguard: {network: 10.9.0.0/29}\nnodes: [{name: a, endpoint: \"a.example:1\"}, {name: b, peers: [a]}]\n"))
	// Sites at the edge of what validates, and sites that once validated
	// and then broke a node: an endpoint's IPv6 zone, an upstream with user
	// info, an empty port, a query or a fragment, a rate that overflows.
	ex := string(ExampleYAML)
	for _, r := range [][2]string{
		{`"192.168.1.50:51820"`, `"[fe80::1%eth0]:51820"`},
		{`"192.168.1.50:51820"`, `"[fe80::1]:51820"`},
		{`"192.168.1.50:51820"`, `"[fe80::1%x\nPreUp = touch /tmp/owned\n#]:51820"`},
		{`"192.168.1.50:51820"`, `"[fe80::1%eth0;]:51820"`},
		{`"192.168.1.50:51820"`, `"vpn-1.example.net.:65535"`},
		{`"http://127.0.0.1:8080"`, `"http://user:pw@127.0.0.1:8080"`},
		{`"http://127.0.0.1:8080"`, `"http://127.0.0.1:"`},
		{`"http://127.0.0.1:8080"`, `"http://127.0.0.1:8080/app/?q=1#top"`},
		{`"http://127.0.0.1:8080"`, `"https://[2001:db8::8]:65535/app/"`},
		{`icmp_rate: 10/second`, `icmp_rate: 99999999999999999999/second`},
		{`icmp_rate: 10/second`, `icmp_rate: 4294967295/day`},
		{`icmp_rate: 10/second`, `icmp_rate: 4294967295/second`},
		{`validity: 87600h`, `validity: 106751d`},
		{`cert_validity: 4h`, `cert_validity: 213504d`},
		{`listen_port: 51820`, `listen_port: 0`},
		{`[192.168.10.0/24]`, `["::ffff:192.168.10.0/120"]`},
		{`{name: service-worker-01, organization: MyOrg}`, "{name: service-worker-01, organization: MyOrg}\n  - {name: api}"},
		{`icmp_rate: 10/second`, "icmp_rate: 10/second\n---\nsite: other\n"},
	} {
		if !strings.Contains(ex, r[0]) {
			f.Fatalf("seed: the example has no %q", r[0])
		}
		f.Add([]byte(strings.Replace(ex, r[0], r[1], 1)))
	}
	bad, _ := filepath.Glob("../testdata/bad/*.yaml")
	for _, p := range bad {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		site, err := Parse(data, "fuzz.yaml")
		if err != nil || len(site.Nodes) > 6 || len(site.Services) > 6 {
			return
		}
		for _, n := range site.Nodes {
			p, err := BuildPlan(site, n.Name, fixedSecrets(t, site, n.Name), goldenNow)
			if err != nil {
				t.Fatalf("node %s of a valid site does not build: %v", n.Name, err)
			}
			checkWithDaemons(t, p)
		}
	})
}

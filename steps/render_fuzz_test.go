package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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

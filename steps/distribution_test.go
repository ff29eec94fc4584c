package steps

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

func distSite(t *testing.T) *Site {
	t.Helper()
	site := Example()
	site.CA.Host = "db"
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	return site
}

func planFile(p *Plan, path string) *File {
	for i := range p.Files {
		if p.Files[i].Path == path {
			return &p.Files[i]
		}
	}
	return nil
}

// With ca.host, every node pulls from the CA host's mesh address on a
// timer; only the CA host serves the files, to the mesh only, and opens
// the port on zt0 alone. Without it, nothing of this is in any plan.
func TestDistributionPlans(t *testing.T) {
	site := distSite(t)
	plans := map[string]*Plan{}
	for _, n := range []string{"db", "web"} {
		p, err := BuildPlan(site, n, fixedSecrets(t, site, n), goldenNow)
		if err != nil {
			t.Fatal(err)
		}
		plans[n] = p
	}
	from, _ := PublishURL(site, fixedSecrets(t, site, "db").Addresses)
	if !strings.HasPrefix(from, "http://10.100.0.") || !strings.HasSuffix(from, ":8440") {
		t.Fatalf("pull URL %q", from)
	}
	for n, p := range plans {
		svc := planFile(p, SystemdDir+"/"+PullUnit)
		if svc == nil || planFile(p, SystemdDir+"/"+PullTimer) == nil || !strings.Contains(string(svc.Content), "node pull --from "+from+" --node "+n+"\n") {
			t.Fatalf("%s: no pull units from %s", n, from)
		}
		enabled := false
		for _, u := range p.Units {
			enabled = enabled || u.Name == PullTimer && u.Enable
		}
		if !enabled {
			t.Errorf("%s: %s not enabled: %+v", n, PullTimer, p.Units)
		}
		if timer := planFile(p, SystemdDir+"/"+PullTimer); !strings.Contains(string(timer.Content), "OnUnitActiveSec="+PullEvery+"\n") {
			t.Errorf("%s: the pull timer does not run every %s:\n%s", n, PullEvery, timer.Content)
		}
		// db has no mTLS service: it gets the CA certificate its pull
		// checks against (or it never pulls, and its KRL goes stale) and
		// the CRL the pull keeps fresh.
		for _, f := range []string{CACertPath, CRLPath} {
			if planFile(p, f) == nil {
				t.Errorf("%s: no %s: the pull unit's condition fails and it never pulls", n, f)
			}
		}
		serves := planFile(p, PublishConfPath) != nil
		opens := strings.Contains(p.Firewall.Script(), "tcp dport 8440 accept")
		if serves != (n == "db") || opens != (n == "db") {
			t.Errorf("%s: publishes %v, firewall opens 8440 %v; only the CA host should", n, serves, opens)
		}
	}
	if rule := regexp.MustCompile(`(?m)^.*8440.*$`).FindString(plans["db"].Firewall.Script()); !strings.Contains(rule, `iifname "zt0"`) || !strings.Contains(rule, "10.100.0.0/24") {
		t.Errorf("the publish port is not limited to the mesh on zt0: %q", rule)
	}
	// The CA host's scheduled CRL service publishes for the nodes.
	ca, err := CAHostUnits(site, "/root/site.yaml", DefaultStateDir, true, false)
	if err != nil || !strings.Contains(string(ca[0].Content), " --publish "+PublishDir+"\n") {
		t.Fatalf("the CA's CRL service does not publish: %v\n%s", err, ca[0].Content)
	}
	plain := Example()
	p, err := BuildPlan(plain, "db", fixedSecrets(t, plain, "db"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	if planFile(p, SystemdDir+"/"+PullUnit) != nil || planFile(p, PublishConfPath) != nil || planFile(p, CACertPath) != nil {
		t.Fatal("a site without ca.host got distribution files")
	}
	bad := Example()
	bad.CA.Host = "nosuch"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "ca.host") {
		t.Fatalf("ca.host naming no node: %v", err)
	}

	// systemd accepts the pull units.
	dir := t.TempDir()
	var paths []string
	for _, u := range []string{PullUnit, PullTimer} {
		f := planFile(plans["web"], SystemdDir+"/"+u)
		p := filepath.Join(dir, u)
		os.WriteFile(p, []byte(strings.ReplaceAll(string(f.Content), BinaryPath, "/bin/true")), 0o644)
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, testenv.Tool(t, "systemd-analyze"), append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The CA host's publish server, run by a real nginx on loopback: the
// three files and nothing else, and only to the mesh.
func TestPublishServer(t *testing.T) {
	site := distSite(t)
	p, err := BuildPlan(site, "db", fixedSecrets(t, site, "db"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	conf := planFile(p, PublishConfPath)
	pub := t.TempDir()
	for _, n := range []string{PublishedCRL, PublishedKRL, PublishedKRLSig, "secret.pem"} {
		os.WriteFile(filepath.Join(pub, n), []byte(n), 0o644)
	}
	get := func(base, name string) int {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name       string
		allowLocal bool
		want       map[string]int
	}{
		{"from the mesh", true, map[string]int{PublishedCRL: 200, PublishedKRL: 200, PublishedKRLSig: 200, "secret.pem": 404, "": 404}},
		{"from elsewhere", false, map[string]int{PublishedCRL: 403, PublishedKRL: 403}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testenv.FreePort(t)
			c := regexp.MustCompile(`listen [^;]+;`).ReplaceAllString(string(conf.Content), fmt.Sprintf("listen 127.0.0.1:%d;", port))
			c = strings.ReplaceAll(c, "root "+PublishDir+";", "root "+pub+";")
			if tc.allowLocal {
				c = regexp.MustCompile(`allow [^;]+;`).ReplaceAllString(c, "allow 127.0.0.0/8;")
			}
			n := mtlsWriteNginx(t, []File{{Path: PublishConfPath, Mode: 0o644, Content: []byte(c)}}, false)
			n.check(t)
			n.start(t, port)
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			for name, want := range tc.want {
				if got := get(base, name); got != want {
					t.Errorf("GET /%s: %d, want %d", name, got, want)
				}
			}
		})
	}
}

// The CA host's first apply checks its nginx configuration (`nginx -t`
// binds every listen address) before WireGuard has brought the mesh
// address up: the publish server must pass that check on a host that has
// no mesh address yet.
func TestPublishServerBeforeTheMesh(t *testing.T) {
	testenv.NeedRoot(t)
	site := distSite(t)
	p, err := BuildPlan(site, "db", fixedSecrets(t, site, "db"), goldenNow)
	if err != nil {
		t.Fatal(err)
	}
	conf := planFile(p, PublishConfPath)
	c := strings.ReplaceAll(string(conf.Content), "root "+PublishDir+";", "root "+t.TempDir()+";")
	n := mtlsWriteNginx(t, []File{{Path: PublishConfPath, Mode: 0o644, Content: []byte(c)}}, false)
	ns := testenv.NewNetns(t, "zpub")
	testenv.MustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	err = testenv.InNetns(ns, func() error {
		_, stderr, err := testenv.RunCmd(context.Background(), mtlsNginxCheckTimeout, exec.Command(n.bin, n.args("-t")...))
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("nginx -t on a CA host without its mesh address: %v", err)
	}
}

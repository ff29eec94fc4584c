package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/monitor"
	"ztwizard/steps/pki"
	"ztwizard/steps/pull"
)

// On a test timescale with one-minute leaves (due at once, valid from 5
// minutes back), the CA host's scheduled `ca crl --if-due --publish`
// renews web's server and SSH host certificates and publishes them
// (certificates only); web's `node pull --node web` fetches them through a
// real nginx and installs them; web's status counts the installed ones.
func TestScheduledRenewalReachesNode(t *testing.T) {
	f := newFleet(t)
	site := readFile(t, filepath.Join(f.dir, "site.yaml"))
	y := strings.Replace(strings.Replace(string(site), "cert_validity: 2160h", "cert_validity: 1m", 1),
		"crl_validity: 168h", "crl_validity: 3m\n  test_timescale: true", 1)
	if err := os.WriteFile(filepath.Join(f.dir, "site.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	f.request(t)
	f.bundle(t, "web", "web.ztb")
	if r := f.apply(t, "web.ztb", "--ca-fingerprint", f.fp); r.code != 0 {
		t.Fatalf("apply: %d %s%s", r.code, r.stdout, r.stderr)
	}
	crt := filepath.Join(f.root, steps.TLSDir, "api.crt")
	hostCert := filepath.Join(f.root, steps.SSHHostCertPath)
	oldCrt, oldHost := readFile(t, crt), readFile(t, hostCert)
	fi, err := os.Stat(crt)
	if err != nil {
		t.Fatal(err)
	}

	time.Sleep(1100 * time.Millisecond) // a later notAfter, to the second
	pub := filepath.Join(f.dir, "pub")
	r := must(t, f.dir, "ca", "crl", "--if-due", "--state", f.ca, "--publish", pub)
	if !strings.Contains(r.stdout, "renewed x509-server api") || !strings.Contains(r.stdout, "renewed ssh-host web") {
		t.Fatalf("the scheduled run renewed nothing:\n%s", r.stdout)
	}
	filepath.Walk(pub, func(p string, _ os.FileInfo, _ error) error {
		if data, _ := os.ReadFile(p); bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s: a private key is published", p)
		}
		return nil
	})
	base := staticNginx(t, pub)
	r = must(t, f.dir, "node", "pull", "--from", base, "--node", "web", "--root", f.root, "--state", f.nodeState)
	if !strings.Contains(r.stdout, "certificate of api renewed") || !strings.Contains(r.stdout, "SSH host certificate renewed") {
		t.Fatalf("node pull:\n%s%s", r.stdout, r.stderr)
	}
	if bytes.Equal(readFile(t, crt), oldCrt) || bytes.Equal(readFile(t, hostCert), oldHost) {
		t.Fatal("the renewed leaves are not installed")
	}
	if !bytes.Equal(readFile(t, crt), readFile(t, filepath.Join(pub, pull.LeafPath("web", "api.crt")))) {
		t.Fatal("the installed certificate is not the published one")
	}
	if nfi, _ := os.Stat(crt); nfi.Mode() != fi.Mode() {
		t.Errorf("mode %v, was %v", nfi.Mode(), fi.Mode())
	}
	// The node's status counts the installed, later leaves, not the
	// bundle's.
	installed, err := pki.DecodeCertPEM(readFile(t, crt))
	if err != nil {
		t.Fatal(err)
	}
	rep, _ := statusJSON(t, f.dir, "--state", f.nodeState, "--root", f.root)
	found := 0
	for _, it := range rep.Items {
		if it.Source == monitor.SourceNode && it.Kind == "x509-server" {
			found++
			if !it.NotAfter.Equal(installed.NotAfter) {
				t.Errorf("status reports the server certificate ending %v, not the installed one's %v", it.NotAfter, installed.NotAfter)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d server items in %+v", found, rep.Items)
	}
}

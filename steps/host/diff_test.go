package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// secrets lists what must never appear in a diff: the private keys the
// plan installs, and each line of their content.
func secrets(t *testing.T, p *steps.Plan) []string {
	t.Helper()
	var out []string
	for _, f := range p.Files {
		if !secret(f) {
			continue
		}
		for _, line := range strings.Split(string(f.Content), "\n") {
			if len(line) > 20 && !strings.HasPrefix(line, "-----") {
				out = append(out, line)
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("plan of %s has no secret files", p.Node)
	}
	return out
}

// TestDiffFiles: a plan's files as unified diffs, private keys named and
// never shown; after the apply nothing; a changed mode, an edited file and
// a file the site no longer needs each shown for what it is.
func TestDiffFiles(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	root := t.TempDir()
	a := NewFiles(root, filepath.Join(t.TempDir(), "journal"))
	ctx := context.Background()

	d, err := a.Diff(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- /dev/null\n+++ /etc/nginx/conf.d/ztwizard-api.conf\n",
		"+    ssl_verify_client      on;\n",
		"--- /etc/ztwizard/tls/api.key\n+++ /etc/ztwizard/tls/api.key\n@@ secret (mode 0600): new, content not shown @@\n",
		"--- " + steps.WireGuardKeyPath + "\n+++ " + steps.WireGuardKeyPath + "\n@@ secret (mode 0600): new, content not shown @@\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q", want)
		}
	}
	for _, s := range secrets(t, web) {
		if strings.Contains(d, s) {
			t.Errorf("diff shows secret content %q", s)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("Diff wrote into the root: %v", entries)
	}

	mustApply(t, a, web)
	if d, err := a.Diff(ctx, web); d != "" || err != nil {
		t.Fatalf("diff after apply: %q, %v", d, err)
	}
	site := filepath.Join(root, steps.SiteFilePath)
	if err := os.Chmod(site, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(root, "etc/nginx/conf.d/ztwizard-api.conf")
	edited := strings.Replace(string(fileOf(t, web, "/etc/nginx/conf.d/ztwizard-api.conf").Content), "ssl_verify_client      on;", "ssl_verify_client      optional;", 1)
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(root, "etc/ztwizard/tls/api.key")
	if err := os.WriteFile(key, []byte("tampered\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err = a.Diff(ctx, pl.plan(noService(t), "web"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- " + steps.SiteFilePath + "\n+++ " + steps.SiteFilePath + "\n", // the site changed too
		"--- /etc/nginx/conf.d/ztwizard-api.conf\n+++ /dev/null\n@@ removed: the site no longer needs it @@\n",
		"--- /etc/ztwizard/tls/api.key\n+++ /dev/null\n@@ removed: the site no longer needs it @@\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff against the site without its service lacks %q:\n%s", want, d)
		}
	}
	d, err = a.Diff(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- " + steps.SiteFilePath + "\n+++ " + steps.SiteFilePath + "\n@@ mode or owner: 0644 root:root @@\n",
		"-    ssl_verify_client      optional;\n+    ssl_verify_client      on;\n",
		"--- /etc/ztwizard/tls/api.key\n+++ /etc/ztwizard/tls/api.key\n@@ secret (mode 0600): changed, content not shown @@\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "tampered") {
		t.Error("diff shows the content of a secret file")
	}
}

// TestDiffLive: on a live host the diff also shows the firewall as nft
// text and the WireGuard interface; Diff changes nothing.
func TestDiffLive(t *testing.T) {
	pl := newPlanner(t)
	db, web := pl.plan(steps.ExampleYAML, "db"), pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	ctx := context.Background()
	dbPub, webPub := web.WireGuard.Config.Peers[0].PublicKey.String(), db.WireGuard.Config.Peers[0].PublicKey.String()

	empty := e.dump(t)
	d, err := e.a.Diff(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- /dev/null\n+++ nft: table inet ztwizard (plan)\n",
		"+\t\ttcp dport @public_tcp accept\n",
		"wireguard zt0:\n  + interface (listen port 51820, addresses 10.100.0.2/24)\n",
		"  + peer " + dbPub + " allowed 10.100.0.1/32 endpoint 192.168.1.100:51820\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	if got := e.dump(t); got != empty {
		t.Fatalf("Diff changed the host:\n%s", testenv.DiffLines(empty, got))
	}

	mustApply(t, e.a, db)
	dbHost := e.dump(t)
	d, err = e.a.Diff(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- nft: table inet ztwizard (now)\n+++ nft: table inet ztwizard (plan)\n",
		"-\t\tiifname \"zt0\" ip saddr . tcp dport @db_clients accept\n",
		"  ~ private key (not shown)\n",
		"  ~ addresses 10.100.0.1/24 -> 10.100.0.2/24\n",
		"  + peer " + dbPub + " allowed 10.100.0.1/32 endpoint 192.168.1.100:51820\n",
		"  - peer " + webPub + "\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff over db lacks %q:\n%s", want, d)
		}
	}
	for _, s := range append(secrets(t, web), secrets(t, db)...) {
		if strings.Contains(d, s) {
			t.Errorf("diff shows secret content %q", s)
		}
	}
	if got := e.dump(t); got != dbHost {
		t.Fatalf("Diff changed the host:\n%s", testenv.DiffLines(dbHost, got))
	}
	if d, err := e.a.Diff(ctx, db); d != "" || err != nil {
		t.Errorf("diff of the applied plan: %q, %v", d, err)
	}
}

// TestDiffBinary shows a binary file (an OpenSSH KRL) by its size and
// hash, never as a line diff of its bytes.
func TestDiffBinary(t *testing.T) {
	root := t.TempDir()
	a := NewFiles(root, filepath.Join(t.TempDir(), "journal"))
	krl := []byte("SSHKRL\n\x00\x00\x00\x01\xff\xfe garbage")
	p := &steps.Plan{Node: "db", Files: []steps.File{{Path: "/etc/ssh/ztwizard.krl", Mode: 0o644, Content: krl}}}
	d, err := a.Diff(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d, "@@ binary (mode 0644): new, 21 bytes, sha256 ") || strings.Contains(d, "garbage") {
		t.Fatalf("binary diff:\n%q", d)
	}
}

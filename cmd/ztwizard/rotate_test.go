package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ca rotate through its phases from the command line: each phase says
// where the rotation stands, the rendered files trust both CAs during the
// overlap and the new one alone after finish, and bad input exits 2 and
// changes nothing.
func TestCARotateCommand(t *testing.T) {
	dir, st := workdir(t)
	must(t, dir, "ca", "init", "--state", st)
	for _, args := range [][]string{
		{"ca", "rotate", "--phase", "sideways"},
		{"ca", "rotate", "--phase", "init", "--ca", "x510"},
		{"ca", "rotate", "--phase", "finish", "--ca", "x509"},
		{"ca", "rotate", "--phase", "reissue"},
		{"ca", "rotate", "--phase", "rollback"},
	} {
		if r := ztw(t, dir, append(args, "--state", st)...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(st, "ca", "next")); err == nil {
		t.Fatal("bad input made a new CA")
	}
	if r := must(t, dir, "ca", "rotate", "--state", st); !strings.Contains(r.stdout, "no CA rotation in progress") {
		t.Errorf("ca rotate with no rotation:\n%s", r.stdout)
	}
	caFile := func() string {
		out := t.TempDir()
		must(t, dir, "render", "--node", "web", "--out", out, "--state", st)
		data, err := os.ReadFile(filepath.Join(out, "etc/ztwizard/ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if n := strings.Count(caFile(), "BEGIN CERTIFICATE"); n != 1 {
		t.Fatalf("before a rotation the CA file holds %d certificates", n)
	}
	if r := must(t, dir, "ca", "rotate", "--phase", "init", "--state", st); !strings.Contains(r.stdout, "phase init") {
		t.Errorf("init:\n%s", r.stdout)
	}
	if r := must(t, dir, "ca", "rotate", "--state", st); !strings.Contains(r.stdout, "phase init") {
		t.Errorf("ca rotate during init:\n%s", r.stdout)
	}
	if n := strings.Count(caFile(), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("during the overlap the CA file holds %d certificates, want 2", n)
	}
	if r := must(t, dir, "--state", st, "ssh", "ca"); strings.Count(r.stdout, "@cert-authority") != 2 || strings.Count(r.stdout, "ssh user CA") != 2 {
		t.Errorf("ssh ca during the overlap must print both CAs of each:\n%s", r.stdout)
	}
	if r := must(t, dir, "ca", "rotate", "--phase", "reissue", "--state", st); !strings.Contains(r.stdout, "phase reissue") || !strings.Contains(r.stdout, "issued x509-server api") {
		t.Errorf("reissue:\n%s", r.stdout)
	}
	out := t.TempDir()
	must(t, dir, "ca", "issue", "--name", "service-worker-01", "--out", out, "--state", st)
	if data, err := os.ReadFile(filepath.Join(out, "ca.pem")); err != nil || strings.Count(string(data), "BEGIN CERTIFICATE") != 2 {
		t.Errorf("a client's ca.pem during the overlap must hold both CAs (err %v)", err)
	}
	if r := must(t, dir, "ca", "rotate", "--phase", "finish", "--state", st); !strings.Contains(r.stdout, "finished") {
		t.Errorf("finish:\n%s", r.stdout)
	}
	if n := strings.Count(caFile(), "BEGIN CERTIFICATE"); n != 1 {
		t.Fatalf("after finish the CA file holds %d certificates, want 1", n)
	}
	if r := must(t, dir, "ca", "list", "--state", st); strings.Count(r.stdout, "retired ") != 1 {
		t.Errorf("ca list after finish must show the old CA retired:\n%s", r.stdout)
	}
}

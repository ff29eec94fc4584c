package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ztwizard/steps/qrtext"
	"ztwizard/steps/qrtext/qrtexttest"
)

// TestWGExport writes a node's wg-quick file with --out (0600, the file
// print gives), shows it as a QR code a real reader reads back, refuses
// to write through a symbolic link or into a missing folder, and shows no
// example that would leave the private key in a file others may read.
func TestWGExport(t *testing.T) {
	dir, st := workdir(t)
	printed := ztw(t, dir, "--state", st, "wg", "export", "--node", "web")
	if printed.code != 0 || !strings.Contains(printed.stdout, "PrivateKey = ") {
		t.Fatalf("wg export: %+v", printed)
	}

	r := ztw(t, dir, "--state", st, "wg", "export", "--node", "web", "--out", "web.conf")
	if r.code != 0 || !strings.Contains(r.stdout, "web.conf (mode 0600") {
		t.Fatalf("wg export --out: %+v", r)
	}
	path := filepath.Join(dir, "web.conf")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("--out wrote mode %04o, want 0600", fi.Mode().Perm())
	}
	if data, _ := os.ReadFile(path); string(data) != printed.stdout {
		t.Errorf("--out wrote:\n%s\nwant what wg export prints:\n%s", data, printed.stdout)
	}
	if strings.Contains(r.stdout, "PrivateKey") {
		t.Error("--out also printed the key")
	}

	r = ztw(t, dir, "--state", st, "wg", "export", "--node", "web", "--qr")
	head, code, ok := strings.Cut(r.stdout, "scan with the WireGuard app (the code holds the private key)\n")
	if r.code != 0 || !ok || strings.Contains(head, "PrivateKey") {
		t.Fatalf("wg export --qr: %+v", r)
	}
	if got, want := qrtexttest.Decode(t, code), string(qrtext.WireGuard([]byte(printed.stdout))); got != want {
		t.Errorf("the QR code reads:\n%s\nwant:\n%s", got, want)
	}

	// Refused before anything is done: no state is made, nothing written.
	fresh := filepath.Join(dir, "fresh-state")
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link.conf")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ out, want string }{
		{"link.conf", "--out link.conf: is a symbolic link"},
		{"missing/web.conf", "--out missing/web.conf: the folder missing does not exist"},
		{".", "--out .: is not a regular file"},
	} {
		r := ztw(t, dir, "--state", fresh, "wg", "export", "--node", "web", "--out", tt.out)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("--out %s: exit %d, want 2 and one line with %q: %s", tt.out, r.code, tt.want, r.stderr)
		}
	}
	if data, _ := os.ReadFile(target); string(data) != "keep\n" {
		t.Errorf("the link's target was written: %q", data)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Error("a refused --out made the state folder")
	}

	help := ztw(t, dir, "wg", "export", "--help")
	_, examples, _ := strings.Cut(help.stdout, "Examples:")
	examples, _, _ = strings.Cut(examples, "Flags:")
	if help.code != 0 || !strings.Contains(examples, "--out") || !strings.Contains(examples, "--qr") || strings.Contains(examples, ">") {
		t.Errorf("wg export examples must use --out and --qr, never a redirection:\n%s", examples)
	}
}

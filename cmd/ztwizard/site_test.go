package main

import (
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secretPieces returns every run of n characters of a key file's secret:
// the base64 body of its PEM blocks, or the whole text when it has none.
func secretPieces(t *testing.T, data []byte, n int) []string {
	t.Helper()
	var body strings.Builder
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		enc := string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: block.Bytes}))
		enc = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(enc), "-----BEGIN X-----"), "-----END X-----")
		body.WriteString(strings.Join(strings.Fields(enc), ""))
	}
	text := body.String()
	if text == "" {
		text = strings.Join(strings.Fields(string(data)), "")
	}
	if len(text) < 40 {
		t.Fatalf("a key of %d characters is too short to test", len(text))
	}
	var out []string
	for i := 0; i+n <= len(text); i++ {
		out = append(out, text[i:i+n])
	}
	return out
}

// storeListing is every file of a folder with its size and time, to see
// that a refused command changed nothing.
func storeListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s %s %d\n", p, info.Mode(), info.ModTime(), info.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestKeyFileAsSiteNeverPrinted hands every command that loads a site the
// store's own key files instead: the X.509 CA key, the SSH user CA key
// (OpenSSH) and a node's WireGuard key. Each refuses with exit 2, names
// the file, the line and the kind of file, prints no piece of the key and
// changes nothing in the store.
func TestKeyFileAsSiteNeverPrinted(t *testing.T) {
	dir, st := workdir(t)
	if r := ztw(t, dir, "render", "--node", "db", "--out", filepath.Join(dir, "out"), "--state", st); r.code != 0 {
		t.Fatalf("render: %+v", r)
	}
	keys := []struct{ file, kind string }{
		{"ca/ca-key.pem", "a private key (PEM)"},
		{"ssh/user_ca", "an OpenSSH private key"},
		{"wireguard/db.key", "a WireGuard key"},
		{"ca/ca.pem", "a certificate (PEM)"},
	}
	commands := [][]string{
		{"validate"},
		{"render", "--node", "db", "--out", filepath.Join(dir, "out2")},
		{"plan", "--node", "db", "--root", filepath.Join(dir, "root")},
		{"wg", "export", "--node", "web"},
		{"ca", "issue", "--name", "service-worker-01"},
	}
	before := storeListing(t, st)
	for _, k := range keys {
		path := filepath.Join(st, k.file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pieces := secretPieces(t, data, 8)
		for _, cmd := range commands {
			t.Run(k.file+" "+strings.Join(cmd[:min(2, len(cmd))], " "), func(t *testing.T) {
				r := ztw(t, dir, append(cmd, "-c", path, "--state", st)...)
				if r.code != 2 {
					t.Fatalf("exit %d, want 2\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
				}
				want := path + ":1: not a site file: it looks like " + k.kind
				if !strings.Contains(r.stderr, want) {
					t.Fatalf("stderr %q lacks %q", r.stderr, want)
				}
				out := strings.Join(strings.Fields(strings.ReplaceAll(r.stdout+r.stderr, `\n`, " ")), "")
				for _, p := range pieces {
					if strings.Contains(out, p) {
						t.Fatalf("output holds %q of the key:\n%s%s", p, r.stdout, r.stderr)
					}
				}
			})
		}
	}
	if after := storeListing(t, st); after != before {
		t.Fatalf("refused commands changed the store:\nbefore\n%s\nafter\n%s", before, after)
	}
	for _, d := range []string{"out2", "root"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("a refused command made %s", d)
		}
	}
}

// TestSiteFileThatIsNoFile gives -c a device, a huge file and a folder to
// validate and to the wizard (which also reads a site that does not
// validate): each is refused at once, naming the limit or the kind of file.
func TestSiteFileThatIsNoFile(t *testing.T) {
	dir, st := workdir(t)
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tt := range []struct{ path, want string }{
		{"/dev/zero", "/dev/zero: is a character device, not a site file"},
		{huge, huge + ": larger than 4194304 bytes (4 MiB), the limit for a site file"},
		{dir, dir + ": is a folder, not a site file"},
	} {
		for _, cmd := range []string{"validate", "wizard"} {
			start := time.Now()
			r := ztw(t, dir, cmd, "-c", tt.path, "--state", st)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("%s -c %s: %+v", cmd, tt.path, r)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s -c %s: took %v", cmd, tt.path, d)
			}
		}
	}
}

// TestBadSitesExitTwo runs validate on every file of testdata/bad: exit 2
// and each expected error, with its line and field path, on stderr.
func TestBadSitesExitTwo(t *testing.T) {
	files, err := filepath.Glob("../../testdata/bad/*.yaml")
	if err != nil || len(files) < 60 {
		t.Fatalf("bad sites: %d, %v", len(files), err)
	}
	dir, st := workdir(t)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		body, want := data, []string(nil)
		if i := strings.Index("\n"+string(data), "\n# want: "); i >= 0 {
			body = data[:i]
			for _, l := range strings.Split(string(data[i:]), "\n") {
				if w, ok := strings.CutPrefix(l, "# want: "); ok {
					want = append(want, w)
				}
			}
		}
		if len(want) == 0 {
			t.Fatalf("%s: no want lines", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
		r := ztw(t, dir, "validate", "-c", name, "--state", st)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q", name, r.code, r.stdout)
		}
		for _, w := range want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", name, w, r.stderr)
			}
		}
	}
}

package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestUserDataGolden pins the whole user-data: the once-only bootcmd, its
// script and the bundle in write_files.
func TestUserDataGolden(t *testing.T) {
	p := &Payload{Site: "oslo-prod", Node: "db", Serial: 7, Created: t0, PrivateKeys: true,
		CAFingerprint: "SHA256:" + strings.Repeat("0f", 32)}
	in := Install{URL: "https://files.example.com/ztwizard", SHA256: strings.Repeat("ab", 32)}
	ud, err := UserData(p, []byte("a signed bundle"), []string{"nftables", "openssh-server", "mariadb-server"}, in)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "user-data.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, ud, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := testenv.DiffLines(string(want), string(ud)); string(want) != string(ud) {
		t.Fatalf("user-data differs from %s (go test -update):\n%s", golden, d)
	}
}

// TestFirstBootScript runs the first-boot script on this host, its binary
// in a folder of the test: packages dpkg has need no apt at all, a missing
// one is all that apt installs, the binary comes over HTTP with python3,
// runs only when its SHA-256 matches, and is what applies the bundle.
// apt-get is a recording stand-in (the test has no mirror).
func TestFirstBootScript(t *testing.T) {
	for _, tool := range []string{"python3", "dpkg-query", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required: %v", tool, err)
		}
	}
	dir := t.TempDir()
	record := filepath.Join(dir, "ran")
	// The "ztwizard" served: it records how it was run.
	served := []byte("#!/bin/sh\necho \"$0 $*\" >> " + record + "\n")
	sum := sha256.Sum256(served)
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dl/ztwizard" {
			http.NotFound(w, r)
			return
		}
		gets.Add(1)
		w.Write(served)
	}))
	defer srv.Close()
	stub := filepath.Join(dir, "stub")
	if err := os.Mkdir(stub, 0o755); err != nil {
		t.Fatal(err)
	}
	aptLog := filepath.Join(dir, "apt")
	if err := os.WriteFile(filepath.Join(stub, "apt-get"), []byte("#!/bin/sh\necho \"$*\" >> "+aptLog+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fp := strings.Repeat("0f", 32)
	tests := []struct {
		name     string
		packages []string
		sum      string
		path     string
		apt      string // apt-get's calls, "" for none
		ok       bool
	}{
		{"all present", []string{"dpkg", "coreutils"}, hex.EncodeToString(sum[:]), "/dl/ztwizard", "", true},
		{"one missing", []string{"dpkg", "ztwizard-no-such-package", "coreutils"}, hex.EncodeToString(sum[:]), "/dl/ztwizard",
			"update -qq\ninstall -y -qq --no-install-recommends ztwizard-no-such-package\n", true},
		{"wrong SHA-256", nil, strings.Repeat("ab", 32), "/dl/ztwizard", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(record)
			os.Remove(aptLog)
			bin := filepath.Join(t.TempDir(), "usr/local/bin/ztwizard")
			in := Install{URL: srv.URL + tt.path, SHA256: tt.sum}
			privsep := filepath.Join(t.TempDir(), "run/sshd")
			script := firstBootScript(bin, privsep, tt.packages, in, fp)
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = append(os.Environ(), "PATH="+stub+":"+os.Getenv("PATH"))
			stdout, stderr, err := testenv.RunCmd(context.Background(), 2*time.Minute, cmd)
			apt, _ := os.ReadFile(aptLog)
			if string(apt) != tt.apt {
				t.Errorf("apt-get ran %q, want %q", apt, tt.apt)
			}
			ran, _ := os.ReadFile(record)
			if !tt.ok {
				if err == nil {
					t.Fatalf("the script succeeded:\n%s", stdout)
				}
				if len(ran) > 0 {
					t.Errorf("a binary that failed its check ran: %s", ran)
				}
				if _, err := os.Stat(bin); err == nil {
					t.Error("a binary that failed its check was installed")
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s%s", err, stdout, stderr)
			}
			want := bin + " apply --bundle " + cloudInitUserData + " --ca-fingerprint " + fp + " --no-confirm\n"
			if string(ran) != want {
				t.Errorf("the fetched binary ran as %q, want %q", ran, want)
			}
			if fi, err := os.Stat(privsep); err != nil || !fi.IsDir() {
				t.Errorf("sshd's privilege separation folder (apply's sshd -t needs it): %v", err)
			}
			if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("the binary: %v %v, want 0755", fi, err)
			}
			if _, err := os.Stat(bin + ".part"); err == nil {
				t.Error("the .part file is left")
			}
			if tt.apt == "" && !strings.Contains(stdout, "ztwizard first boot: packages present: "+strings.Join(tt.packages, " ")) {
				t.Errorf("stdout:\n%s", stdout)
			}
		})
	}
	if gets.Load() != 3 {
		t.Errorf("the server saw %d GETs of the binary, want 3", gets.Load())
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnsibleCommand writes the inventory, playbook and known_hosts with
// the real binary: the folder 0700, the paths absolute, the host CA the
// state's; bad input exits 2 and writes nothing.
func TestAnsibleCommand(t *testing.T) {
	dir, st := workdir(t)
	out := filepath.Join(dir, "push")
	r := ztw(t, dir, "--state", st, "-c", "site.yaml", "ansible", "--out", "push", "--identity", "keys/admin",
		"--host-key", "db=SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE", "--confirm", "30s")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the folder: %v %v, want mode 0700", fi.Mode(), err)
	}
	inv, err := os.ReadFile(filepath.Join(out, "inventory.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ansible_ssh_private_key_file: "` + filepath.Join(dir, "keys/admin") + `"`,
		`ztwizard_ssh_certificate: "` + filepath.Join(dir, "keys/admin-cert.pub") + `"`,
		`ztwizard_site: "` + filepath.Join(dir, "site.yaml") + `"`,
		`ztwizard_state: "` + st + `"`,
		`ztwizard_local_binary: "` + bin + `"`,
		`ztwizard_confirm: "30s"`,
		`host_key_fingerprint: "SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"`,
	} {
		if !strings.Contains(string(inv), want) {
			t.Errorf("inventory.yml has no %s:\n%s", want, inv)
		}
	}
	kh, err := os.ReadFile(filepath.Join(out, "known_hosts"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(st, "ssh", "host_ca.pub"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Fields(string(ca))[1]
	if !strings.Contains(string(kh), "@cert-authority db,192.168.1.100,web,192.168.1.50 ssh-ed25519 "+key) {
		t.Errorf("known_hosts does not trust the state's host CA %s:\n%s", key, kh)
	}

	// Bad input, even the first command on a new state folder, writes
	// nothing: not the folder, not the state.
	fresh := filepath.Join(dir, "fresh-state")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"ansible"}, "--out is required"},
		{"host key without node", []string{"ansible", "--out", "bad", "--host-key", "SHA256:x"}, `--host-key "SHA256:x": want NODE=SHA256:...`},
		{"unknown node", []string{"ansible", "--out", "bad", "--host-key", "dbx=SHA256:TBjlVeGJMgJY1OWcqu87Lu1PXIefH9UddtmPoLXAEdE"}, `no node "dbx"`},
		{"bad fingerprint", []string{"ansible", "--out", "bad", "--host-key", "db=MD5:00"}, `--host-key db="MD5:00": not a SHA256 fingerprint`},
		{"bad user", []string{"ansible", "--out", "bad", "--user", "a b"}, `--user "a b": not an account name`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ztw(t, dir, append([]string{"--state", fresh, "-c", "site.yaml"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, want 2 and %q:\n%s%s", r.code, c.want, r.stdout, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
				t.Errorf("bad input made the folder: %v", err)
			}
			if _, err := os.Stat(fresh); !os.IsNotExist(err) {
				t.Errorf("bad input made the state folder: %v", err)
			}
		})
	}
}

package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/pull"
	"ztwizard/steps/testenv"
)

// staticNginx serves dir on a loopback port with a real nginx and returns
// the base URL.
func staticNginx(t *testing.T, dir string) string {
	t.Helper()
	bin := testenv.Tool(t, "nginx")
	prefix := t.TempDir()
	port := testenv.FreePort(t)
	conf := fmt.Sprintf(`user root root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 16; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d;
        root %[3]s;
        location / { default_type application/octet-stream; }
    }
}
`, prefix, port, dir)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, exec.Command(bin, "-c", confPath, "-p", prefix+"/", "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;"), testenv.ProcOptions{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := p.WaitReady(10*time.Second, testenv.Listening(addr)); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The CA host publishes; a node pulls through a real nginx and installs
// only what the CA it trusts signed and what is not older than what it has.
// A CRL with a bad signature, from another CA or with a lower number, and a
// KRL with a bad signature or a lower version, are refused and the
// installed files kept.
func TestPullRefusesAndKeeps(t *testing.T) {
	dir, st := workdir(t)
	pub := filepath.Join(dir, "pub")
	root := filepath.Join(dir, "node")
	must(t, dir, "ca", "init", "--state", st)
	must(t, dir, "ca", "crl", "--state", st, "--publish", pub)
	base := staticNginx(t, pub)
	// The node holds the CA from its bundle.
	os.MkdirAll(filepath.Join(root, "etc/ztwizard"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc/ssh"), 0o755)
	os.WriteFile(filepath.Join(root, steps.CACertPath), readFile(t, filepath.Join(st, "ca/ca.pem")), 0o644)

	crlPath, krlPath := filepath.Join(root, steps.CRLPath), filepath.Join(root, steps.SSHKRLPath)
	pullOK := func(want string) {
		t.Helper()
		r := ztw(t, dir, "node", "pull", "--from", base, "--root", root)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("pull: exit %d, want %q\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	pullOK("(0 new revocation(s))")
	if !bytes.Equal(readFile(t, crlPath), readFile(t, filepath.Join(pub, pull.CRLName))) || !bytes.Equal(readFile(t, krlPath), readFile(t, filepath.Join(pub, pull.KRLName))) {
		t.Fatal("the pulled files are not the published ones")
	}
	oldCRL, oldKRL, oldSig := readFile(t, crlPath), readFile(t, krlPath), readFile(t, filepath.Join(pub, pull.KRLSigName))

	// A revocation: newer CRL and KRL, pulled.
	must(t, dir, "ca", "issue", "--name", "service-worker-01", "--state", st)
	// Revocations publish at once, without waiting for the CRL timer.
	must(t, dir, "ca", "revoke", "--name", "service-worker-01", "--state", st, "--publish", pub)
	pullOK("(1 new revocation(s))")
	os.WriteFile(filepath.Join(dir, "id.pub"), []byte(strings.TrimSpace(genPub(t, dir))+"\n"), 0o644)
	must(t, dir, "ssh", "sign", "--user", "alice", "--key", "id.pub", "--state", st)
	must(t, dir, "ssh", "revoke", "--user", "alice", "--state", st, "--publish", pub)
	pullOK("KRL version")
	goodCRL, goodKRL := readFile(t, crlPath), readFile(t, krlPath)
	if bytes.Equal(goodCRL, oldCRL) || bytes.Equal(goodKRL, oldKRL) {
		t.Fatal("the revocation did not reach the node")
	}
	goodPub := map[string][]byte{}
	for _, n := range []string{pull.CRLName, pull.KRLName, pull.KRLSigName} {
		goodPub[n] = readFile(t, filepath.Join(pub, n))
	}

	// Another CA's CRL.
	other := filepath.Join(dir, "other")
	otherPub := filepath.Join(dir, "other-pub")
	must(t, dir, "ca", "init", "--state", other)
	must(t, dir, "ca", "crl", "--state", other, "--publish", otherPub)
	// The signature is at the end of the DER: flip its last byte.
	block, _ := pem.Decode(goodPub[pull.CRLName])
	der := bytes.Clone(block.Bytes)
	der[len(der)-1] ^= 1
	tamperedCRL := pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
	tamperedKRL := bytes.Clone(goodPub[pull.KRLName])
	tamperedKRL[len(tamperedKRL)-1] ^= 1

	for _, tc := range []struct {
		name          string
		files         map[string][]byte
		what, because string
	}{
		{"CRL with a bad signature", map[string][]byte{pull.CRLName: tamperedCRL}, "CRL", "not signed by the installed CA"},
		{"CRL from another CA", map[string][]byte{pull.CRLName: readFile(t, filepath.Join(otherPub, pull.CRLName))}, "CRL", "not signed by the installed CA"},
		{"CRL with a lower number", map[string][]byte{pull.CRLName: oldCRL}, "CRL", "lower than the installed one's"},
		{"KRL with a bad signature", map[string][]byte{pull.KRLName: tamperedKRL}, "KRL", "not by the installed CA"},
		{"KRL signed by another CA", map[string][]byte{pull.KRLName: readFile(t, filepath.Join(otherPub, pull.KRLName)), pull.KRLSigName: readFile(t, filepath.Join(otherPub, pull.KRLSigName))}, "KRL", "not by the installed CA"},
		{"KRL with a lower version", map[string][]byte{pull.KRLName: oldKRL, pull.KRLSigName: oldSig}, "KRL", "lower than the installed one's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n, data := range goodPub {
				if d, ok := tc.files[n]; ok {
					data = d
				}
				if err := os.WriteFile(filepath.Join(pub, n), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := ztw(t, dir, "node", "pull", "--from", base, "--root", root)
			if r.code != 1 || !strings.Contains(r.stdout, tc.what+": ") || !strings.Contains(r.stdout, tc.because) || !strings.Contains(r.stdout, "the installed one is kept") {
				t.Fatalf("exit %d, want 1 and %q\n%s%s", r.code, tc.because, r.stdout, r.stderr)
			}
			if !bytes.Equal(readFile(t, crlPath), goodCRL) || !bytes.Equal(readFile(t, krlPath), goodKRL) {
				t.Fatal("a refused file replaced the installed one")
			}
		})
	}
	if r := ztw(t, dir, "node", "pull", "--from", "10.0.0.1", "--root", root); r.code != 2 {
		t.Fatalf("a --from without scheme: %+v", r)
	}
}

// genPub makes an Ed25519 key in dir and returns its public half.
func genPub(t *testing.T, dir string) string {
	t.Helper()
	key := filepath.Join(dir, "id")
	genKey(t, key)
	return string(readFile(t, key+".pub"))
}

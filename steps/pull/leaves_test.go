package pull

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/bundle"
	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
	"ztwizard/steps/testenv"
)

// leafLab is a CA host (an authority on a test timescale, its clock set
// by the test) and the node web's root: web's keys made by its request,
// its first certificates installed as a bundle installs them.
type leafLab struct {
	a    *authority.Authority
	now  time.Time
	root string // web's /
	pub  string // the CA host's published folder
}

func newLeafLab(t *testing.T) *leafLab {
	t.Helper()
	site := steps.Example().Clone()
	site.CA.Host = "db"
	site.CA.TestTimescale = true
	site.CA.CertValidity, site.CA.CRLValidity = "10m", "3m"
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	l := &leafLab{now: time.Now().Truncate(time.Second), root: t.TempDir(), pub: t.TempDir()}
	l.a = &authority.Authority{Store: store, Site: site, Now: func() time.Time { return l.now }}
	req, _, err := bundle.MakeRequest(l.root, site, "web", l.now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.a.ImportRequest(req); err != nil {
		t.Fatal(err)
	}
	web := l.renew(t)
	ca, _, err := l.a.CA()
	if err != nil {
		t.Fatal(err)
	}
	_, hostCA, err := l.a.SSHCA(authority.KindSSHHostCA)
	if err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string][]byte{
		steps.CACertPath:          pki.EncodeCertPEM(ca.Cert),
		steps.TLSDir + "/api.crt": web.Servers["api"],
		steps.SSHHostCertPath:     web.HostCert,
		steps.SSHKnownHostsPath:   []byte("@cert-authority * " + sshca.PublicKeyLine(hostCA, "host CA") + "\n"),
	} {
		if err := os.MkdirAll(filepath.Dir(l.path(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(l.path(p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (l *leafLab) path(p string) string { return filepath.Join(l.root, filepath.FromSlash(p)) }

// renew runs the CA host's scheduled renewal and publication; it returns
// web's leaves.
func (l *leafLab) renew(t *testing.T) authority.Leaves {
	t.Helper()
	leaves, err := l.a.RenewLeaves()
	if err != nil {
		t.Fatal(err)
	}
	if err := PublishLeaves(l.pub, leaves); err != nil {
		t.Fatal(err)
	}
	ca, _, err := l.a.CA()
	if err != nil {
		t.Fatal(err)
	}
	crl, err := l.a.CRL()
	if err != nil {
		t.Fatal(err)
	}
	krl, err := l.a.KRL()
	if err != nil {
		t.Fatal(err)
	}
	if err := Publish(l.pub, ca, crl, krl); err != nil {
		t.Fatal(err)
	}
	for _, x := range leaves {
		if x.Node == "web" {
			return x
		}
	}
	t.Fatalf("no leaves of web in %+v", leaves)
	return authority.Leaves{}
}

// serve serves the published folder on loopback.
func (l *leafLab) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(l.pub)), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func (l *leafLab) pull(t *testing.T, from string) (*Result, string, error) {
	t.Helper()
	var log bytes.Buffer
	res, err := Pull(context.Background(), Options{Root: l.root, From: from, Node: "web", Now: l.now, Log: &log})
	if res == nil {
		t.Fatalf("pull: %v", err)
	}
	return res, log.String(), err
}

func (l *leafLab) read(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(l.path(p))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The CA host renews web's server and SSH host certificates at two thirds
// of their life and publishes them (certificates only); web's pull
// installs them with the installed files' modes, and nothing before they
// are renewed.
func TestPullRenewedLeaves(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.Need(t, "openssl", "ssh-keygen")
	l := newLeafLab(t)
	from := l.serve(t)
	os.Chmod(l.path(steps.TLSDir+"/api.crt"), 0o640)
	os.Chown(l.path(steps.TLSDir+"/api.crt"), 0, 33) // root:www-data, as nginx may read it
	oldCert, oldHost := l.read(t, steps.TLSDir+"/api.crt"), l.read(t, steps.SSHHostCertPath)

	// Not yet due: published as installed, nothing changes.
	l.now = l.now.Add(4 * time.Minute)
	l.renew(t)
	res, log, err := l.pull(t, from)
	if err != nil || len(res.Servers) != 0 || res.HostCert {
		t.Fatalf("pull before renewal: %+v %v\n%s", res, err, log)
	}

	// Two thirds of 15 minutes (5 backdated) is 5 minutes after issue.
	l.now = l.now.Add(2 * time.Minute)
	web := l.renew(t)
	if bytes.Equal(web.Servers["api"], oldCert) || bytes.Equal(web.HostCert, oldHost) {
		t.Fatal("the CA host renewed nothing at two thirds")
	}
	filepath.Walk(l.pub, func(p string, fi os.FileInfo, err error) error {
		if data, _ := os.ReadFile(p); bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s: a private key is published", p)
		}
		return nil
	})
	res, log, err = l.pull(t, from)
	if err != nil || len(res.Servers) != 1 || res.Servers[0] != "api" || !res.HostCert {
		t.Fatalf("pull after renewal: %+v %v\n%s", res, err, log)
	}
	if got := l.read(t, steps.TLSDir+"/api.crt"); !bytes.Equal(got, web.Servers["api"]) {
		t.Fatal("the installed server certificate is not the renewed one")
	}
	if got := l.read(t, steps.SSHHostCertPath); !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(web.HostCert)) {
		t.Fatal("the installed host certificate is not the renewed one")
	}
	if fi, _ := os.Stat(l.path(steps.TLSDir + "/api.crt")); fi.Mode().Perm() != 0o640 || fi.Sys().(*syscall.Stat_t).Gid != 33 {
		t.Errorf("the renewed certificate's mode is %v, group %d; want the installed 0640, 33", fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid)
	}
	// openssl and ssh-keygen read what was installed as nginx and sshd will.
	testenv.MustRun(t, "openssl", "verify", "-attime", strconv.FormatInt(l.now.Unix(), 10), "-CAfile", l.path(steps.CACertPath), "-purpose", "sslserver", l.path(steps.TLSDir+"/api.crt"))
	if out := testenv.MustRun(t, "ssh-keygen", "-L", "-f", l.path(steps.SSHHostCertPath)); !strings.Contains(out, "host certificate") {
		t.Errorf("ssh-keygen -L:\n%s", out)
	}
	if !strings.Contains(log, "certificate of api renewed") || !strings.Contains(log, "SSH host certificate renewed") {
		t.Errorf("log:\n%s", log)
	}
	// Again: nothing new.
	if res, log, err := l.pull(t, from); err != nil || len(res.Servers) != 0 || res.HostCert {
		t.Fatalf("a second pull: %+v %v\n%s", res, err, log)
	}
}

// A published leaf that is from another CA, for another key, older than
// the installed one, expired or for other names is refused, logged, and
// the installed one kept.
func TestPullRefusesLeaves(t *testing.T) {
	l := newLeafLab(t)
	from := l.serve(t)
	l.now = l.now.Add(6 * time.Minute)
	web := l.renew(t) // the good, renewed ones, published
	installedCert, installedHost := l.read(t, steps.TLSDir+"/api.crt"), l.read(t, steps.SSHHostCertPath)
	good, err := pki.DecodeCertPEM(web.Servers["api"])
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := l.a.CA()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherCA := testCA(t, otherKey)
	issue := func(signer *pki.CA, pub any, cn string, notAfter time.Time) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
			NotBefore: l.now.Add(-time.Hour), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.Cert, pub, signer.Key)
		if err != nil {
			t.Fatal(err)
		}
		return pemCert(mustParse(t, der))
	}
	cn := good.Subject.CommonName
	// The host certificates: the host CA's signer, and one of another CA.
	hostSigner, _, err := l.a.SSHCA(authority.KindSSHHostCA)
	if err != nil {
		t.Fatal(err)
	}
	hostKeyPEM := l.read(t, steps.SSHHostKeyPath)
	hk, err := ssh.ParsePrivateKey(hostKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	installedHC := parseHostCert(t, installedHost)
	otherHostKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherHostPub, _ := ssh.NewPublicKey(&otherHostKey.PublicKey)
	otherSigner, _ := ssh.NewSignerFromKey(otherKey)
	caSigner, err := ssh.NewSignerFromSigner(hostSigner)
	if err != nil {
		t.Fatal(err)
	}
	hostCert := func(signer ssh.Signer, key ssh.PublicKey, principals []string, before time.Time) []byte {
		c := &ssh.Certificate{Key: key, Serial: 99, CertType: ssh.HostCert, KeyId: "web", ValidPrincipals: principals,
			ValidAfter: uint64(l.now.Add(-time.Hour).Unix()), ValidBefore: uint64(before.Unix())}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		return ssh.MarshalAuthorizedKey(c)
	}
	later := time.Unix(int64(installedHC.ValidBefore), 0).Add(time.Hour)
	// Each case publishes one bad file; the other is the installed one.
	publish := func(name string, data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(l.pub, LeavesDir, "web", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	publish("api.crt", installedCert)
	publish(HostCertName, installedHost)

	for _, tc := range []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"server from another CA", "api.crt", issue(otherCA, good.PublicKey, cn, good.NotAfter), "not a certificate in force from a CA this node trusts"},
		{"server for another key", "api.crt", issue(&pki.CA{Cert: ca.Cert, Key: ca.Key}, otherKey.Public(), cn, good.NotAfter), "for another key"},
		{"server older than installed", "api.crt", issue(&pki.CA{Cert: ca.Cert, Key: ca.Key}, good.PublicKey, cn, l.now.Add(time.Minute)), "not later than the installed one"},
		{"server expired", "api.crt", issue(&pki.CA{Cert: ca.Cert, Key: ca.Key}, good.PublicKey, cn, l.now.Add(-time.Minute)), "not a certificate in force"},
		{"server other names", "api.crt", issue(&pki.CA{Cert: ca.Cert, Key: ca.Key}, good.PublicKey, "evil.example.com", good.NotAfter), "not the installed"},
		{"server not a certificate", "api.crt", []byte("hello\n"), "not one PEM certificate"},
		{"host cert from another CA", HostCertName, hostCert(otherSigner, hk.PublicKey(), installedHC.ValidPrincipals, later), "not by a host CA this node trusts"},
		{"host cert for another key", HostCertName, hostCert(caSigner, otherHostPub, installedHC.ValidPrincipals, later), "for another key"},
		{"host cert older", HostCertName, hostCert(caSigner, hk.PublicKey(), installedHC.ValidPrincipals, time.Unix(int64(installedHC.ValidBefore), 0)), "not later than the installed one"},
		{"host cert expired", HostCertName, hostCert(caSigner, hk.PublicKey(), installedHC.ValidPrincipals, l.now.Add(-time.Minute)), "expired"},
		{"host cert other principals", HostCertName, hostCert(caSigner, hk.PublicKey(), append(installedHC.ValidPrincipals, "evil"), later), "not the installed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			publish(tc.file, tc.data)
			if tc.file == HostCertName {
				defer publish(tc.file, installedHost)
			} else {
				defer publish(tc.file, installedCert)
			}
			res, log, err := l.pull(t, from)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("pull: %v, want a refusal with %q\n%s", err, tc.want, log)
			}
			if !strings.Contains(log, "the installed one is kept") {
				t.Errorf("not logged:\n%s", log)
			}
			if tc.file == HostCertName {
				if res.HostCert || !bytes.Equal(l.read(t, steps.SSHHostCertPath), installedHost) {
					t.Fatal("the refused host certificate was installed")
				}
			} else if len(res.Servers) != 0 || !bytes.Equal(l.read(t, steps.TLSDir+"/api.crt"), installedCert) {
				t.Fatal("the refused server certificate was installed")
			}
		})
	}
	// The good ones still go in.
	publish("api.crt", web.Servers["api"])
	publish(HostCertName, web.HostCert)
	if res, log, err := l.pull(t, from); err != nil || len(res.Servers) != 1 || !res.HostCert {
		t.Fatalf("the good leaves: %+v %v\n%s", res, err, log)
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parseHostCert(t *testing.T, line []byte) *ssh.Certificate {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok {
		t.Fatal("not a certificate")
	}
	return c
}

// What a pull installs is what the daemons serve once reloaded, as the
// pull unit reloads them: a real nginx presents the renewed server
// certificate after a reload (SIGHUP), a real sshd the renewed host
// certificate after its reload (SIGHUP, which `systemctl reload ssh`
// sends; sshd reads host certificates only at start and reload).
func TestRenewedLeavesServedAfterReload(t *testing.T) {
	testenv.NeedRoot(t)
	nginxBin := testenv.Tool(t, "nginx")
	sshdBin := testenv.Tool(t, "sshd")
	keyscan := testenv.Tool(t, "ssh-keyscan")
	l := newLeafLab(t)
	from := l.serve(t)

	// nginx with web's api certificate and key.
	prefix := t.TempDir()
	tlsPort := testenv.FreePort(t)
	conf := fmt.Sprintf(`user root root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 16; }
http {
    access_log off;
    client_body_temp_path %[1]s/cb;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen 127.0.0.1:%[2]d ssl;
        ssl_certificate %[3]s/api.crt;
        ssl_certificate_key %[3]s/api.key;
        location / { return 204; }
    }
}
`, prefix, tlsPort, l.path(steps.TLSDir))
	os.WriteFile(filepath.Join(prefix, "nginx.conf"), []byte(conf), 0o644)
	nginxCmd := exec.Command(nginxBin, "-c", filepath.Join(prefix, "nginx.conf"), "-p", prefix+"/", "-e", filepath.Join(prefix, "error.log"), "-g", "daemon off;")
	ng := testenv.Start(t, nginxCmd, testenv.ProcOptions{})
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	if err := ng.WaitReady(10*time.Second, testenv.Listening(tlsAddr)); err != nil {
		t.Fatal(err)
	}
	// sshd with web's host key and certificate.
	sshPort := testenv.FreePort(t)
	sshdConf := filepath.Join(t.TempDir(), "sshd_config")
	os.WriteFile(sshdConf, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
HostCertificate %s
PidFile %s/sshd.pid
UsePAM no
`, sshPort, l.path(steps.SSHHostKeyPath), l.path(steps.SSHHostCertPath), prefix)), 0o644)
	os.MkdirAll("/run/sshd", 0o755)
	sshdCmd := exec.Command(sshdBin, "-D", "-e", "-f", sshdConf)
	sd := testenv.Start(t, sshdCmd, testenv.ProcOptions{})
	sshAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sshPort))
	if err := sd.WaitReady(10*time.Second, testenv.Listening(sshAddr)); err != nil {
		t.Fatal(err)
	}

	ca, _, err := l.a.CA()
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate { // the server certificate nginx presents, verified
		t.Helper()
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		var c *tls.Conn
		var err error
		for i := 0; i < 50; i++ {
			if c, err = tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: pool, ServerName: "api.internal.example.com", Time: func() time.Time { return l.now }}); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0]
	}
	hostSerial := func() string { // the host certificate sshd presents
		t.Helper()
		out, err := testenv.RunTimeout(context.Background(), 10*time.Second, keyscan, "-c", "-t", "ed25519", "-p", strconv.Itoa(sshPort), "127.0.0.1")
		if err != nil {
			t.Fatalf("ssh-keyscan: %v\n%s", err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			for len(f) > 0 && !strings.Contains(f[0], "-cert-") {
				f = f[1:] // the host, when ssh-keyscan names it
			}
			if len(f) >= 2 {
				pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(f, " ")))
				if err != nil {
					t.Fatal(err)
				}
				return strconv.FormatUint(pub.(*ssh.Certificate).Serial, 10)
			}
		}
		t.Fatalf("sshd presents no host certificate:\n%s", out)
		return ""
	}
	oldServed, oldHost := served(), hostSerial()

	// Renewed at two thirds (5 minutes after issue for 10-minute leaves).
	l.now = l.now.Add(6 * time.Minute)
	web := l.renew(t)
	res, log, err := l.pull(t, from)
	if err != nil || len(res.Servers) != 1 || !res.HostCert {
		t.Fatalf("pull: %+v %v\n%s", res, err, log)
	}
	renewed, err := pki.DecodeCertPEM(web.Servers["api"])
	if err != nil {
		t.Fatal(err)
	}
	if got := served(); got.SerialNumber.Cmp(oldServed.SerialNumber) != 0 {
		t.Fatal("nginx serves the renewed certificate before its reload")
	}
	nginxCmd.Process.Signal(syscall.SIGHUP)
	sshdCmd.Process.Signal(syscall.SIGHUP)
	var got *x509.Certificate
	for i := 0; i < 50; i++ {
		if got = served(); got.SerialNumber.Cmp(renewed.SerialNumber) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("nginx serves serial %x after its reload, want the renewed %x", got.SerialNumber, renewed.SerialNumber)
	}
	if err := sd.WaitReady(10*time.Second, testenv.Listening(sshAddr)); err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatUint(parseHostCert(t, web.HostCert).Serial, 10)
	var host string
	for i := 0; i < 50; i++ {
		if host = hostSerial(); host == want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if host != want || host == oldHost {
		t.Fatalf("sshd presents host certificate serial %s after its reload, want the renewed %s (was %s)", host, want, oldHost)
	}
}

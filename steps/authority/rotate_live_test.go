//go:build linux

package authority

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
	"ztwizard/steps/testenv"
)

// liveAuthority is an authority on the real clock (nginx and sshd check
// validity against it) for site.
func liveAuthority(t *testing.T, site *steps.Site) *Authority {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return &Authority{Store: store, Site: site}
}

// writeTree writes files under root as they would land under /, with
// rewrite applied to each file's content.
func writeTree(t *testing.T, root string, files []steps.File, rewrite func(steps.File) []byte) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := p + ".new"
		if err := os.WriteFile(tmp, rewrite(f), f.Mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

// liveNginx is nginx serving one node's rendered files from a prefix.
type liveNginx struct {
	bin, dir, root, conf string
}

func (n *liveNginx) args(extra ...string) []string {
	return append([]string{"-c", n.conf, "-p", n.dir + "/", "-e", filepath.Join(n.dir, "error.log")}, extra...)
}

func (n *liveNginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// render writes the node's nginx files as an apply would (vhost paths
// pointed at the prefix, listening on loopback) and checks them with
// nginx -t.
func (n *liveNginx) render(t *testing.T, a *Authority, node string) {
	t.Helper()
	sec, err := a.Secrets(node)
	if err != nil {
		t.Fatal(err)
	}
	files, err := steps.NginxFiles(a.Site, node, sec)
	if err != nil {
		t.Fatal(err)
	}
	listen := regexp.MustCompile(`(?m)^(\s*listen\s+)(\d+ )`)
	writeTree(t, n.root, files, func(f steps.File) []byte {
		if !strings.HasPrefix(f.Path, steps.NginxConfDir+"/") {
			return f.Content
		}
		c := strings.ReplaceAll(string(f.Content), `"/etc/`, `"`+n.root+`/etc/`)
		return listen.ReplaceAll([]byte(c), []byte("${1}127.0.0.1:${2}"))
	})
	if _, errOut, err := testenv.RunCmd(context.Background(), 30*time.Second, exec.Command(n.bin, n.args("-t")...)); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, errOut)
	}
}

// reload is what apply does after writing nginx's files.
func (n *liveNginx) reload(t *testing.T) {
	t.Helper()
	if _, errOut, err := testenv.RunCmd(context.Background(), 30*time.Second, exec.Command(n.bin, n.args("-s", "reload")...)); err != nil {
		t.Fatalf("nginx -s reload: %v\n%s", err, errOut)
	}
}

// liveClient is one client identity's certificate, and what nginx must
// answer it in the current phase (0: not checked, while a reload moves it
// from one answer to the other).
type liveClient struct {
	name string
	cert tls.Certificate
	want int
}

// liveProber keeps making requests to nginx while the phases run.
type liveProber struct {
	port    int
	mu      sync.Mutex
	roots   *x509.CertPool
	clients []*liveClient
	phase   string
	counts  map[string]int // phase/client -> requests checked
	fails   []string
}

func (p *liveProber) get(c tls.Certificate) (int, *x509.Certificate, error) {
	p.mu.Lock()
	roots := p.roots
	p.mu.Unlock()
	var server *x509.Certificate
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: "api.internal.example.com",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			server = cs.PeerCertificates[0]
			return nil
		},
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
		},
	}}
	resp, err := client.Get(fmt.Sprintf("https://api.internal.example.com:%d/", p.port))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, server, nil
}

// run probes every client in turn until stop is closed.
func (p *liveProber) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := 0; i < 100000; i++ {
		select {
		case <-stop:
			return
		default:
		}
		p.mu.Lock()
		clients := make([]liveClient, 0, len(p.clients))
		for _, c := range p.clients {
			clients = append(clients, *c)
		}
		phase := p.phase
		p.mu.Unlock()
		for _, c := range clients {
			status, _, err := p.get(c.cert)
			if c.want == 0 {
				continue
			}
			p.mu.Lock()
			if phase == p.phase { // the phase did not move while asking
				p.counts[phase+"/"+c.name]++
				if err != nil || status != c.want {
					p.fails = append(p.fails, fmt.Sprintf("phase %s: client %s got %d (%v), want %d", phase, c.name, status, err, c.want))
				}
			}
			p.mu.Unlock()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// set changes what a client must get, adding it if new.
func (p *liveProber) set(c *liveClient, want int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.want = want
	for _, x := range p.clients {
		if x == c {
			return
		}
	}
	p.clients = append(p.clients, c)
}

// enter starts a phase: counts from now on are the phase's.
func (p *liveProber) enter(phase string, roots *x509.CertPool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase = phase
	if roots != nil {
		p.roots = roots
	}
}

// await waits until every checked client was probed a few times in the
// current phase.
func (p *liveProber) await(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		short := ""
		for _, c := range p.clients {
			if c.want != 0 && p.counts[p.phase+"/"+c.name] < 3 {
				short = c.name
			}
		}
		p.mu.Unlock()
		if short == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %s was not probed 3 times in phase %s", short, p.phase)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// until polls cond for up to 10 s until it holds 10 times in a row: a
// reload has taken effect once the old workers stopped accepting (until
// then either may answer).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; n < 10; time.Sleep(50 * time.Millisecond) {
		if n++; !cond() {
			n = 0
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

func tlsPair(t *testing.T, cert *x509.Certificate, key any) tls.Certificate {
	t.Helper()
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestRotateLiveNginx takes the X.509 CA through every phase of a
// rotation while clients keep making requests to a real nginx serving the
// rendered vhost, re-rendered and reloaded at each phase: a client of the
// old CA gets 200 until finish and 400 after it, a client of the new CA 200
// from init on, and no request is refused that both policies allow.
func TestRotateLiveNginx(t *testing.T) {
	testenv.Need(t, "nginx")
	port := testenv.FreePort(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(upstream.Close)
	site := steps.Example().Clone()
	sv, _ := site.Service("api")
	sv.Listen, sv.Upstream = port, upstream.URL
	site.Firewall.PublicTCP = append(site.Firewall.PublicTCP, port)
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	a := liveAuthority(t, site)

	dir := t.TempDir()
	n := &liveNginx{bin: testenv.Tool(t, "nginx"), dir: dir, root: filepath.Join(dir, "root"), conf: filepath.Join(dir, "nginx.conf")}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;\n"
	}
	conf := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 64; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[3]s/ztwizard-*.conf;
}
`, user, dir, filepath.Join(n.root, filepath.FromSlash(steps.NginxConfDir)))
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.render(t, a, "web")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx error.log:\n%s", n.errorLog())
		}
	})
	proc := testenv.Start(t, exec.Command(n.bin, n.args("-g", "daemon off;")...), testenv.ProcOptions{})
	if err := proc.WaitReady(10*time.Second, testenv.Listening(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))); err != nil {
		t.Fatalf("%v\n%s", err, n.errorLog())
	}

	oldCA, _, err := a.CA()
	if err != nil {
		t.Fatal(err)
	}
	issued, err := a.Issue("service-worker-01", "")
	if err != nil {
		t.Fatal(err)
	}
	old := &liveClient{name: "old-CA client", cert: tlsPair(t, issued.Cert, issued.Key)}
	p := &liveProber{port: port, roots: pool(oldCA.Cert), counts: map[string]int{}}
	p.enter("before", nil)
	p.set(old, 200)
	stop, done := make(chan struct{}), make(chan struct{})
	go p.run(stop, done)
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			close(stop)
			<-done
		}
	})
	p.await(t)

	// init: the new CA beside the old.
	if _, err := a.RotateInit([]string{KindCA}); err != nil {
		t.Fatal(err)
	}
	next, err := a.loadCAAt(nextFile(CACertFile), nextFile(CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.GenerateKey(pki.KeyType(site.CA.Key))
	if err != nil {
		t.Fatal(err)
	}
	serial, err := pki.RandomSerial(nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := next.IssueClient(key.Public(), "service-worker-01", "MyOrg", time.Hour, time.Now(), serial)
	if err != nil {
		t.Fatal(err)
	}
	fresh := &liveClient{name: "new-CA client", cert: tlsPair(t, nc, key)}
	p.enter("init", pool(oldCA.Cert, next.Cert))
	n.render(t, a, "web")
	n.reload(t)
	until(t, "nginx trusts the new CA after init", func() bool { s, _, err := p.get(fresh.cert); return err == nil && s == 200 })
	p.set(fresh, 200)
	p.await(t)

	// reissue: every leaf under the new CA, both still trusted.
	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	cur, err := a.Current(KindClient, "service-worker-01")
	if err != nil || cur.Cert.CheckSignatureFrom(next.Cert) != nil {
		t.Fatalf("reissue gave the client no certificate of the new CA: %v", err)
	}
	reissued := &liveClient{name: "reissued client", cert: tlsPair(t, cur.Cert, cur.Key)}
	p.enter("reissue", nil)
	p.set(reissued, 200)
	n.render(t, a, "web")
	n.reload(t)
	until(t, "nginx serves the server certificate of the new CA", func() bool {
		s, server, err := p.get(reissued.cert)
		return err == nil && s == 200 && server.CheckSignatureFrom(next.Cert) == nil
	})
	p.await(t)

	// finish: the old CA dropped.
	p.set(old, 0)
	if _, err := a.RotateFinish(); err != nil {
		t.Fatal(err)
	}
	p.enter("finish", nil)
	n.render(t, a, "web")
	n.reload(t)
	until(t, "nginx refuses the old CA's client after finish", func() bool { s, _, err := p.get(old.cert); return err == nil && s == 400 })
	p.set(old, 400)
	p.await(t)

	close(stop)
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.fails {
		t.Error(f)
	}
	t.Logf("requests checked: %v", p.counts)
}

// liveSSHD is sshd serving one node's rendered files from a root.
type liveSSHD struct {
	root, conf string
	proc       *testenv.Proc
	port       int
}

func (d *liveSSHD) render(t *testing.T, a *Authority, node string) {
	t.Helper()
	sec, err := a.Secrets(node)
	if err != nil {
		t.Fatal(err)
	}
	files, err := steps.SSHFiles(a.Site, node, sec)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, d.root, files, func(f steps.File) []byte {
		if f.Path == steps.SSHDropInPath {
			return bytes.ReplaceAll(f.Content, []byte(" /etc/"), []byte(" "+d.root+"/etc/"))
		}
		return f.Content
	})
	if _, errOut, err := testenv.RunCmd(context.Background(), 30*time.Second, exec.Command("/usr/sbin/sshd", "-t", "-f", d.conf)); err != nil {
		t.Fatalf("sshd -t: %v\n%s", err, errOut)
	}
}

// reload is what apply does after writing sshd's files: SIGHUP, after
// which sshd runs itself again with the new files.
func (d *liveSSHD) reload(t *testing.T) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.root, "sshd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	mark := len(d.proc.Output())
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	until(t, "sshd listens again after SIGHUP", func() bool {
		out := d.proc.Output()
		return len(out) > mark && strings.Contains(out[mark:], "Server listening on 127.0.0.1")
	})
}

// login runs ssh with a key and its certificate as root, trusting the host
// through the rendered known_hosts only; it tells whether it got in.
func (d *liveSSHD) login(t *testing.T, key string) (bool, string) {
	t.Helper()
	args := []string{"-F", "/dev/null", "-p", strconv.Itoa(d.port), "-i", key,
		"-o", "CertificateFile=" + key + "-cert.pub",
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + filepath.Join(d.root, steps.SSHKnownHostsPath),
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=db",
		"-o", "UpdateHostKeys=no", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
		"root@127.0.0.1", "echo", "ztwizard-ok"}
	cmd := exec.Command("/usr/bin/ssh", args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "SSH_AUTH_SOCK=")
	out, errOut, err := testenv.RunCmd(context.Background(), 30*time.Second, cmd)
	return err == nil && strings.TrimSpace(out) == "ztwizard-ok", errOut
}

// userKey makes a key pair in a folder of its own, with the certificate
// line given by sign, and returns the private key's path.
func userKey(t *testing.T, sign func(ssh.PublicKey) string) string {
	t.Helper()
	key, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	data, err := sshca.EncodePrivateKey(key, "user", nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+"-cert.pub", []byte(sign(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRotateLiveSSHD takes both SSH CAs through every phase of a rotation
// against a real sshd serving the rendered files, reloaded at each phase,
// and a real ssh client trusting the host through the rendered known_hosts
// only: a user certificate of the old user CA and one of the new both log
// in during the overlap (while the host certificate moves to the new host
// CA), only the new after finish.
func TestRotateLiveSSHD(t *testing.T) {
	testenv.Need(t, "/usr/sbin/sshd", "/usr/bin/ssh")
	testenv.NeedRoot(t)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	site := steps.Example()
	a := liveAuthority(t, site)
	hostKey, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	hostPub, err := ssh.NewPublicKey(hostKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RecordHostKey("db", hostPub); err != nil {
		t.Fatal(err)
	}
	d := &liveSSHD{root: t.TempDir(), port: testenv.FreePort(t)}
	d.conf = filepath.Join(d.root, "sshd_config")
	hostPEM, err := sshca.EncodePrivateKey(hostKey, "db", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d.root, "etc/ssh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.root, steps.SSHHostKeyPath), hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("Include %[1]s%[2]s\nPort %[3]d\nListenAddress 127.0.0.1\nPidFile %[1]s/sshd.pid\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n",
		d.root, steps.SSHDropInPath, d.port)
	if err := os.WriteFile(d.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d.render(t, a, "db")
	d.proc = testenv.Start(t, exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", d.conf), testenv.ProcOptions{})
	if err := d.proc.WaitReady(10*time.Second, testenv.Listening(net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port)))); err != nil {
		t.Fatal(err)
	}
	signByStore := func(pub ssh.PublicKey) string {
		s, err := a.SignUser("alice", pub, []string{"root"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s.Line
	}
	must := func(phase, who, key string, want bool) {
		t.Helper()
		if got, errOut := d.login(t, key); got != want {
			t.Errorf("%s: %s logged in = %v, want %v\nssh: %s\nsshd: %s", phase, who, got, want, errOut, d.proc.Output())
		}
	}
	old := userKey(t, signByStore)
	must("before", "old user CA", old, true)

	if _, err := a.RotateInit([]string{KindSSHUserCA, KindSSHHostCA}); err != nil {
		t.Fatal(err)
	}
	nextUser, _, err := a.loadSSHCAAt(KindSSHUserCA, nextFile(SSHUserCAFile))
	if err != nil {
		t.Fatal(err)
	}
	fresh := userKey(t, func(pub ssh.PublicKey) string {
		c, err := sshca.SignUser(nextUser, sshca.Request{Key: pub, KeyID: "alice-new", Principals: []string{"root"}, Validity: time.Hour, Serial: 1 << 40}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return sshca.CertLine(c, "alice-new")
	})
	d.render(t, a, "db")
	d.reload(t)
	must("init", "old user CA", old, true)
	must("init", "new user CA", fresh, true)

	if _, _, err := a.RotateReissue(); err != nil {
		t.Fatal(err)
	}
	resigned := userKey(t, signByStore)
	d.render(t, a, "db")
	d.reload(t)
	must("reissue", "old user CA", old, true)
	must("reissue", "new user CA", fresh, true)
	must("reissue", "re-signed by the store", resigned, true)

	if _, err := a.RotateFinish(); err != nil {
		t.Fatal(err)
	}
	d.render(t, a, "db")
	d.reload(t)
	must("finish", "old user CA", old, false)
	must("finish", "new user CA", fresh, true)
	must("finish", "re-signed by the store", resigned, true)
}

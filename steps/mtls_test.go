//go:build linux

package steps

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ztwizard/steps/pki"
	"ztwizard/steps/testenv"
)

// mtlsAllowedDN is the subject DN nginx reports for the allowed client.
const mtlsAllowedDN = "CN=service-worker-01,O=MyOrg"

// Bounds on every step that involves the nginx binary or the network.
const (
	mtlsNginxCheckTimeout = 30 * time.Second
	mtlsNginxStartTimeout = 10 * time.Second
	mtlsRequestTimeout    = 10 * time.Second
)

// mtlsPKI is a test CA with its CRL and the certificates the tests use.
type mtlsPKI struct {
	ca      *pki.CA
	caPEM   []byte
	crlPEM  []byte
	pool    *x509.CertPool
	servers map[string]KeyPair         // service name -> server pair
	clients map[string]tls.Certificate // label -> client certificate
}

// mtlsNewPKI builds a CA valid around the real clock (nginx checks real
// time), a server certificate per service, and the client certificates of
// the end-to-end test: allowed, not listed, revoked, foreign, near misses.
func mtlsNewPKI(t testing.TB, services []Service) *mtlsPKI {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	p := &mtlsPKI{servers: map[string]KeyPair{}, clients: map[string]tls.Certificate{}}
	p.ca = mtlsRoot(t, now)
	p.caPEM = pki.EncodeCertPEM(p.ca.Cert)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca.Cert)

	for _, sv := range services {
		key := mtlsKey(t)
		cert, err := p.ca.IssueServer(key.Public(), sv.ServerName, []string{sv.ServerName}, nil, 24*time.Hour, now, mtlsSerial(t))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodeKeyPEM(key, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.servers[sv.Name] = KeyPair{Cert: pki.EncodeCertPEM(cert), Key: keyPEM}
	}

	foreign := mtlsRoot(t, now) // the same name as the site CA, another key
	for _, c := range []struct {
		label, cn, org string
		ca             *pki.CA
	}{
		{"allowed", "service-worker-01", "MyOrg", p.ca},
		{"not-listed", "service-worker-02", "MyOrg", p.ca},
		{"revoked", "service-worker-01", "MyOrg", p.ca},
		{"foreign", "service-worker-01", "MyOrg", foreign},
		{"suffix", "service-worker-011", "MyOrg", p.ca},
		{"prefix", "xservice-worker-01", "MyOrg", p.ca},
		{"upper-case", "Service-Worker-01", "MyOrg", p.ca},
		{"comma-in-cn", "service-worker-01,O=MyOrg", "MyOrg", p.ca},
		{"cn-in-org", "nobody", "x,CN=service-worker-01", p.ca},
	} {
		key := mtlsKey(t)
		cert, err := c.ca.IssueClient(key.Public(), c.cn, c.org, 24*time.Hour, now, mtlsSerial(t))
		if err != nil {
			t.Fatal(err)
		}
		p.clients[c.label] = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}

	revoked := p.clients["revoked"].Leaf.SerialNumber
	der, err := p.ca.CRL([]pki.Revoked{{Serial: revoked, At: now.Add(-time.Minute)}}, big.NewInt(1), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.crlPEM = pki.EncodeCRLPEM(der)
	return p
}

// secrets is what NginxFiles gets from the state store.
func (p *mtlsPKI) secrets() *Secrets {
	return &Secrets{CACert: p.caPEM, CRL: p.crlPEM, Servers: p.servers}
}

// mtlsRoot is a root CA named like the example site's, valid for a week.
func mtlsRoot(t testing.TB, now time.Time) *pki.CA {
	t.Helper()
	ca, err := pki.NewRoot(pki.Subject{CommonName: "Internal Root CA", Organization: "MyOrg", Country: "NO"},
		mtlsKey(t), 7*24*time.Hour, now, mtlsSerial(t))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// mtlsKey is a fresh ECDSA P-256 key.
func mtlsKey(t testing.TB) crypto.Signer {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// mtlsSerial is a fresh random serial number.
func mtlsSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := pki.RandomSerial(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mtlsNginx is an nginx prefix: the node's files under root, its own
// nginx.conf, logs and temporary files.
type mtlsNginx struct {
	bin  string
	dir  string // the prefix: nginx.conf, logs, temp paths
	conf string
}

// mtlsWriteNginx writes files under a temporary root as they would land
// under /, points the vhosts' absolute paths at that root, makes each
// vhost listen on loopback (127.0.0.1 and ::1) only when loopback is set,
// and writes an nginx.conf that includes the vhosts inside http{}.
func mtlsWriteNginx(t testing.TB, files []File, loopback bool) *mtlsNginx {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	listenRE := regexp.MustCompile(`(?m)^(\s*listen\s+)(\d+ )`)
	for _, f := range files {
		content := f.Content
		if strings.HasPrefix(f.Path, NginxConfDir+"/") {
			content = []byte(strings.ReplaceAll(string(content), `"/etc/`, `"`+root+`/etc/`))
			if loopback {
				content = listenRE.ReplaceAll(content, []byte("${1}127.0.0.1:${2}"))
				content = []byte(strings.ReplaceAll(string(content), "listen [::]:", "listen [::1]:"))
			}
		}
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root root;\n" // workers must reach the temporary prefix
	}
	conf := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events {
    worker_connections 64;
}
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[3]s/ztwizard-*.conf;
}
`, user, dir, filepath.Join(root, filepath.FromSlash(NginxConfDir)))
	n := &mtlsNginx{bin: testenv.Tool(t, "nginx"), dir: dir, conf: filepath.Join(dir, "nginx.conf")}
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// args are nginx's arguments for this prefix, with the error log set from
// the start so nginx never touches /var/log/nginx.
func (n *mtlsNginx) args(extra ...string) []string {
	return append([]string{"-c", n.conf, "-p", n.dir + "/", "-e", filepath.Join(n.dir, "error.log")}, extra...)
}

// check runs nginx -t and fails the test unless it passes.
func (n *mtlsNginx) check(t testing.TB) {
	t.Helper()
	if _, _, err := testenv.RunCmd(context.Background(), mtlsNginxCheckTimeout, exec.Command(n.bin, n.args("-t")...)); err != nil {
		t.Fatal(err)
	}
}

// start runs nginx in the foreground as a child process in its own process
// group, stopped (the whole group) when the test ends (see testenv.Start),
// and waits until port accepts connections.
func (n *mtlsNginx) start(t testing.TB, port int) {
	t.Helper()
	// Registered first, so that it runs once nginx has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx error.log:\n%s", n.errorLog())
		}
	})
	nginx := testenv.Start(t, exec.Command(n.bin, n.args("-g", "daemon off;")...), testenv.ProcOptions{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := nginx.WaitReady(mtlsNginxStartTimeout, testenv.Listening(addr)); err != nil {
		t.Fatalf("%v\nerror.log:\n%s", err, n.errorLog())
	}
}

// errorLog is nginx's error log, for messages.
func (n *mtlsNginx) errorLog() string {
	b, err := os.ReadFile(filepath.Join(n.dir, "error.log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// mtlsUpstream is the service behind nginx: it answers with the
// X-Client-DN it received and records every request's headers by path.
type mtlsUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]http.Header
}

// mtlsNewUpstream starts the upstream, closed in t.Cleanup.
func mtlsNewUpstream(t testing.TB) *mtlsUpstream {
	t.Helper()
	u := &mtlsUpstream{seen: map[string]http.Header{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.URL.Path] = r.Header.Clone()
		u.seen[r.URL.Path].Set("X-Test-Host", r.Host)
		u.mu.Unlock()
		io.WriteString(w, r.Header.Get("X-Client-DN"))
	}))
	t.Cleanup(u.Close)
	return u
}

// headers returns what the upstream received for path, if anything.
func (u *mtlsUpstream) headers(path string) (http.Header, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h, ok := u.seen[path]
	return h, ok
}

// mtlsGet sends GET https://serverName:port/path to nginx on 127.0.0.1,
// trusting only the test CA and presenting cert (none when nil) whatever
// CAs nginx names as acceptable.
func mtlsGet(p *mtlsPKI, serverName string, port int, cert *tls.Certificate, path string, header http.Header, maxVersion uint16) (int, string, error) {
	cfg := &tls.Config{
		RootCAs:    p.pool,
		ServerName: serverName,
		MinVersion: tls.VersionTLS10,
		MaxVersion: maxVersion,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	dialer := &net.Dialer{Timeout: mtlsRequestTimeout}
	client := &http.Client{
		Timeout: mtlsRequestTimeout,
		Transport: &http.Transport{
			TLSClientConfig:   cfg,
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "tcp", addr)
			},
		},
	}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s:%d%s", serverName, port, path), nil)
	if err != nil {
		return 0, "", err
	}
	for k, vs := range header {
		req.Header[k] = vs // as given, not canonicalised
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// mtlsExampleSite is a copy of the example site whose api service listens
// on port and proxies to upstream.
func mtlsExampleSite(t testing.TB, port int, upstream string) *Site {
	t.Helper()
	site := Example().Clone()
	sv, ok := site.Service("api")
	if !ok {
		t.Fatal("example site has no service api")
	}
	sv.Listen = port
	sv.Upstream = upstream
	site.Firewall.PublicTCP = append(site.Firewall.PublicTCP, port)
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	return site
}

// TestNginxMTLS serves the example site's api service through a real
// nginx and checks authentication (400), authorisation (403) and the
// X-Client-DN header the upstream receives.
func TestNginxMTLS(t *testing.T) {
	upstream := mtlsNewUpstream(t)
	port := testenv.FreePort(t)
	site := mtlsExampleSite(t, port, upstream.URL)
	api, _ := site.Service("api")
	p := mtlsNewPKI(t, site.Services)

	files, err := NginxFiles(site, "web", p.secrets())
	if err != nil {
		t.Fatal(err)
	}
	n := mtlsWriteNginx(t, files, true)
	n.check(t)
	n.start(t, port)

	cert := func(label string) *tls.Certificate {
		c, ok := p.clients[label]
		if !ok {
			t.Fatalf("no client certificate %q", label)
		}
		return &c
	}
	forged := http.Header{
		"X-Client-DN":     {"CN=admin"},
		"x-client-dn":     {"CN=admin,O=MyOrg"},
		"X_Client_DN":     {"CN=admin"},
		"X-Forwarded-For": {"203.0.113.7"},
	}
	tests := []struct {
		name   string
		cert   *tls.Certificate
		header http.Header
		want   int
	}{
		{"no client certificate", nil, nil, http.StatusBadRequest},
		{"foreign CA", cert("foreign"), nil, http.StatusBadRequest},
		{"revoked", cert("revoked"), nil, http.StatusBadRequest},
		{"valid, not on the allow-list", cert("not-listed"), nil, http.StatusForbidden},
		{"CN with a suffix", cert("suffix"), nil, http.StatusForbidden},
		{"CN with a prefix", cert("prefix"), nil, http.StatusForbidden},
		{"CN in other case", cert("upper-case"), nil, http.StatusForbidden},
		{"escaped comma in CN", cert("comma-in-cn"), nil, http.StatusForbidden},
		{"CN inside O", cert("cn-in-org"), nil, http.StatusForbidden},
		{"forged CN header, not on the allow-list", cert("not-listed"), forged, http.StatusForbidden},
		{"allowed", cert("allowed"), nil, http.StatusOK},
		{"allowed, forged headers", cert("allowed"), forged, http.StatusOK},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/case-%d", i)
			status, body, err := mtlsGet(p, api.ServerName, port, tt.cert, path, tt.header, 0)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if status != tt.want {
				t.Fatalf("status %d, want %d (body %q)", status, tt.want, body)
			}
			h, reached := upstream.headers(path)
			if tt.want != http.StatusOK {
				if reached {
					t.Fatalf("the upstream was reached: %v", h)
				}
				return
			}
			if !reached {
				t.Fatal("the upstream was not reached")
			}
			if body != mtlsAllowedDN {
				t.Errorf("upstream answered X-Client-DN %q, want %q", body, mtlsAllowedDN)
			}
			for k, vs := range h {
				norm := strings.ReplaceAll(strings.ToLower(k), "_", "-")
				if norm == "x-client-dn" && (k != "X-Client-Dn" || !slices.Equal(vs, []string{mtlsAllowedDN})) {
					t.Errorf("upstream saw %s: %q, want only X-Client-DN: %q", k, vs, mtlsAllowedDN)
				}
			}
			for k, want := range map[string]string{
				"X-Client-Dn":       mtlsAllowedDN,
				"X-Forwarded-For":   "127.0.0.1",
				"X-Forwarded-Proto": "https",
				"X-Test-Host":       api.ServerName,
			} {
				if got := h.Values(k); !slices.Equal(got, []string{want}) {
					t.Errorf("upstream saw %s: %q, want %q", k, got, want)
				}
			}
		})
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		status, _, err := mtlsGet(p, api.ServerName, port, cert("allowed"), "/tls11", nil, tls.VersionTLS11)
		if err == nil {
			t.Fatalf("a TLS 1.1 client got status %d", status)
		}
		if _, reached := upstream.headers("/tls11"); reached {
			t.Fatal("the upstream was reached over TLS 1.1")
		}
	})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v)+" accepted", func(t *testing.T) {
			path := "/" + strings.ReplaceAll(tls.VersionName(v), " ", "")
			status, body, err := mtlsGet(p, api.ServerName, port, cert("allowed"), path, nil, v)
			if err != nil || status != http.StatusOK || body != mtlsAllowedDN {
				t.Fatalf("status %d, body %q, error %v", status, body, err)
			}
		})
	}
}

// TestNginxManyServices checks with nginx -t the vhosts of a node with ten
// services, several sharing a port under different server names.
func TestNginxManyServices(t *testing.T) {
	site := Example().Clone()
	ports := []int{testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)}
	site.Services = nil
	for i := range 10 {
		site.Services = append(site.Services, Service{
			Name:       fmt.Sprintf("svc-%02d", i),
			Node:       "web",
			ServerName: fmt.Sprintf("svc-%02d.internal.example.com", i),
			Listen:     ports[i%len(ports)],
			Upstream:   fmt.Sprintf("http://127.0.0.1:%d/app-%d/", 9000+i, i),
			Allow:      []string{"service-worker-01"},
		})
	}
	site.Clients = append(site.Clients, Client{Name: "service-worker-02", Organization: "MyOrg"})
	site.Services[3].Allow = []string{"service-worker-01", "service-worker-02"}
	site.Services[4].Allow = []string{"service-worker-02"}
	site.Firewall.PublicTCP = append(site.Firewall.PublicTCP, ports...)
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	p := mtlsNewPKI(t, site.Services)
	files, err := NginxFiles(site, "web", p.secrets())
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + 3*10; len(files) != want {
		t.Fatalf("%d files, want %d", len(files), want)
	}
	vars := map[string]string{}
	varRE := regexp.MustCompile(`(?m)^map \$ssl_client_s_dn \$(\S+) \{`)
	for _, f := range files {
		if !strings.HasPrefix(f.Path, NginxConfDir+"/") {
			continue
		}
		m := varRE.FindAllSubmatch(f.Content, -1)
		if len(m) != 1 {
			t.Fatalf("%s: %d allow-list maps, want 1", f.Path, len(m))
		}
		v := string(m[0][1])
		if other, dup := vars[v]; dup {
			t.Fatalf("%s and %s both define $%s", other, f.Path, v)
		}
		vars[v] = f.Path
	}
	mtlsWriteNginx(t, files, false).check(t)
}

// TestNginxFiles checks the files for the example site: paths, modes, order
// and the essentials of the rendered vhost.
func TestNginxFiles(t *testing.T) {
	site := Example()
	p := mtlsNewPKI(t, site.Services)
	files, err := NginxFiles(site, "web", p.secrets())
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		path    string
		mode    fs.FileMode
		content []byte // nil: checked below
	}{
		{"/etc/nginx/conf.d/ztwizard-api.conf", 0o644, nil},
		{CACertPath, 0o644, p.caPEM},
		{CRLPath, 0o644, p.crlPEM},
		{"/etc/ztwizard/tls/api.crt", 0o644, p.servers["api"].Cert},
		{"/etc/ztwizard/tls/api.key", 0o600, p.servers["api"].Key},
	}
	if len(files) != len(want) {
		t.Fatalf("%d files, want %d: %v", len(files), len(want), mtlsPaths(files))
	}
	for i, w := range want {
		f := files[i]
		if f.Path != w.path || f.Mode != w.mode || f.Owner != "" || f.Group != "" {
			t.Errorf("file %d: %s %v %q:%q, want %s %v root:root", i, f.Path, f.Mode, f.Owner, f.Group, w.path, w.mode)
		}
		if w.content != nil && string(f.Content) != string(w.content) {
			t.Errorf("%s: content differs from the secrets", f.Path)
		}
	}
	conf := string(files[0].Content)
	essentials := []struct {
		name string
		re   string
	}{
		{"listen", `listen 443 ssl http2;`},
		{"listen IPv6", `listen \[::\]:443 ssl http2;`},
		{"server_tokens", `server_tokens off;`},
		{"ecdh curves", `ssl_ecdh_curve\s+X25519:prime256v1:secp384r1;`},
		{"prefer client ciphers", `ssl_prefer_server_ciphers off;`},
		{"no session cache", `ssl_session_cache\s+off;`},
		{"no tickets", `ssl_session_tickets off;`},
		{"server_name", `server_name "api\.internal\.example\.com";`},
		{"certificate", `ssl_certificate\s+"/etc/ztwizard/tls/api\.crt";`},
		{"key", `ssl_certificate_key\s+"/etc/ztwizard/tls/api\.key";`},
		{"protocols", `ssl_protocols\s+TLSv1\.2 TLSv1\.3;`},
		{"verify client", `ssl_verify_client\s+on;`},
		{"client CA", `ssl_client_certificate\s+"/etc/ztwizard/ca\.pem";`},
		{"verify depth", `ssl_verify_depth\s+1;`},
		{"CRL", `ssl_crl\s+"/etc/ztwizard/crl\.pem";`},
		{"allow-list map", `map \$ssl_client_s_dn \$ztwizard_allow_api \{\n\s+default 0;\n\s+"~\^CN=service\\\\-worker\\\\-01\(\?:,\|\\\\z\)" 1;\n\}`},
		{"authorisation", `if \(\$ztwizard_allow_api != 1\) \{\n\s+return 403;\n\s+\}`},
		{"proxy_pass", `proxy_pass "http://127\.0\.0\.1:8080";`},
		{"X-Client-DN", `proxy_set_header X-Client-DN \$ssl_client_s_dn;`},
		{"X-Forwarded-For", `proxy_set_header X-Forwarded-For \$remote_addr;`},
		{"X-Forwarded-Proto", `proxy_set_header X-Forwarded-Proto \$scheme;`},
		{"Host", `proxy_set_header Host \$host;`},
	}
	for _, e := range essentials {
		t.Run(e.name, func(t *testing.T) {
			if !regexp.MustCompile(`(?m)^\s*` + e.re + `$`).MatchString(conf) {
				t.Errorf("no line matching %s in\n%s", e.re, conf)
			}
		})
	}
	if strings.Contains(conf, "ssl_protocols TLSv1 ") || strings.Contains(conf, "TLSv1.1") || strings.Contains(conf, "SSLv3") {
		t.Errorf("old protocol enabled:\n%s", conf)
	}

	golden := filepath.Join("testdata", "nginx", "ztwizard-api.conf")
	if *mtlsUpdate {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantConf, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./steps/ -run TestNginxFiles -update-nginx)", err)
	}
	if string(wantConf) != conf {
		t.Errorf("vhost differs from %s (run with -update-nginx if intended):\n%s", golden, conf)
	}
}

var mtlsUpdate = flag.Bool("update-nginx", false, "rewrite testdata/nginx golden files")

// mtlsPaths lists the paths of files, for messages.
func mtlsPaths(files []File) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Path
	}
	return out
}

// TestNginxFilesNoServices: a node without services gets no files at all.
func TestNginxFilesNoServices(t *testing.T) {
	for _, node := range []string{"db", "nowhere"} {
		files, err := NginxFiles(Example(), node, nil)
		if err != nil || files != nil {
			t.Errorf("node %q: %v, %v; want no files and no error", node, mtlsPaths(files), err)
		}
	}
}

// TestNginxFilesErrors: bad secrets or a site value that cannot be written
// safely into nginx configuration are errors naming what is wrong.
func TestNginxFilesErrors(t *testing.T) {
	site := Example()
	p := mtlsNewPKI(t, site.Services)
	other := mtlsNewPKI(t, site.Services)
	tests := []struct {
		name   string
		site   func(*Site)
		sec    func(*Secrets)
		wantIn []string
	}{
		{"no server entry", nil, func(s *Secrets) { s.Servers = nil }, []string{`mtls: service "api"`, "no server certificate"}},
		{"empty key", nil, func(s *Secrets) { s.Servers = map[string]KeyPair{"api": {Cert: p.servers["api"].Cert}} }, []string{`service "api"`, "empty"}},
		{"key of another certificate", nil, func(s *Secrets) {
			s.Servers = map[string]KeyPair{"api": {Cert: p.servers["api"].Cert, Key: other.servers["api"].Key}}
		}, []string{`service "api"`, "server certificate and key"}},
		{"no CA", nil, func(s *Secrets) { s.CACert = nil }, []string{`node "web"`, "CA chain"}},
		{"no CRL", nil, func(s *Secrets) { s.CRL = nil }, []string{`node "web"`, "CRL"}},
		{"CRL of another CA", nil, func(s *Secrets) { s.CRL = other.crlPEM }, []string{"CRL", "none signed by CA"}},
		{"leaf as CA", nil, func(s *Secrets) { s.CACert = p.servers["api"].Cert }, []string{"not a CA"}},
		{"dollar in upstream", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080/$host" }, nil, []string{`service "api"`, "upstream"}},
		{"quote in upstream", func(s *Site) { s.Services[0].Upstream = `http://127.0.0.1:8080/"x` }, nil, []string{`service "api"`, "upstream"}},
		{"query in upstream", func(s *Site) { s.Services[0].Upstream = "http://127.0.0.1:8080/?a=b" }, nil, []string{"upstream"}},
		{"space in server_name", func(s *Site) { s.Services[0].ServerName = "api.example.com; include /x" }, nil, []string{"server_name"}},
		{"bad allow name", func(s *Site) { s.Services[0].Allow = []string{`a" 1; default 1; "`} }, nil, []string{"allow[0]"}},
		{"bad service name", func(s *Site) { s.Services[0].Name = "API" }, func(s *Secrets) { s.Servers = map[string]KeyPair{"API": p.servers["api"]} }, []string{`service "API"`}},
		{"bad port", func(s *Site) { s.Services[0].Listen = 70000 }, nil, []string{"listen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := site.Clone()
			if tt.site != nil {
				tt.site(s)
			}
			sec := p.secrets()
			if tt.sec != nil {
				tt.sec(sec)
			}
			files, err := NginxFiles(s, "web", sec)
			if err == nil {
				t.Fatalf("no error; files %v", mtlsPaths(files))
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestNginxCNPattern checks the allow-list expression against the DNs
// nginx prints, with Go's regexp (its syntax here is shared with PCRE).
func TestNginxCNPattern(t *testing.T) {
	key := nginxCNPattern("service-worker-01")
	re := regexp.MustCompile(strings.TrimPrefix(key, "~"))
	tests := []struct {
		dn   string
		want bool
	}{
		{"CN=service-worker-01,O=MyOrg", true},
		{"CN=service-worker-01", true},
		{"CN=service-worker-011,O=MyOrg", false},
		{"CN=xservice-worker-01,O=MyOrg", false},
		{"O=MyOrg,CN=service-worker-01", false},
		{"CN=service-worker-01\\,O=MyOrg,O=MyOrg", false},
		{"CN=nobody,O=x\\,CN=service-worker-01", false},
		{"CN=service-worker-01+O=MyOrg", false},
		{"CN=Service-Worker-01,O=MyOrg", false},
		{"CN=service.worker.01,O=MyOrg", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := re.MatchString(tt.dn); got != tt.want {
			t.Errorf("%s on %q: %v, want %v", key, tt.dn, got, tt.want)
		}
	}
	if pcreQuote("a-b.c") != `a\-b\.c` {
		t.Errorf("pcreQuote: %q", pcreQuote("a-b.c"))
	}
}

// mtlsChain is a root, an intermediate under it, and a server and a client
// certificate issued by the intermediate: a chain pki does not make (its
// roots sign leaves directly), built here to check ssl_verify_depth.
type mtlsChain struct {
	root, inter       *x509.Certificate
	rootKey, interKey crypto.Signer
	server            KeyPair
	client            tls.Certificate
}

// mtlsNewChain builds the chain with serverName as the server's name.
func mtlsNewChain(t testing.TB, serverName string) *mtlsChain {
	t.Helper()
	now := time.Now()
	issue := func(tmpl, parent *x509.Certificate, pub any, signer crypto.Signer) *x509.Certificate {
		tmpl.SerialNumber = mtlsSerial(t)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.BasicConstraintsValid = true
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ch := &mtlsChain{rootKey: mtlsKey(t), interKey: mtlsKey(t)}
	rt := &x509.Certificate{Subject: pkix.Name{CommonName: "Chain Root"}, IsCA: true, MaxPathLen: 1,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	ch.root = issue(rt, rt, ch.rootKey.Public(), ch.rootKey)
	ch.inter = issue(&x509.Certificate{Subject: pkix.Name{CommonName: "Chain Intermediate"}, IsCA: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, ch.root, ch.interKey.Public(), ch.rootKey)
	serverKey, clientKey := mtlsKey(t), mtlsKey(t)
	srv := issue(&x509.Certificate{Subject: pkix.Name{CommonName: serverName}, DNSNames: []string{serverName},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		ch.inter, serverKey.Public(), ch.interKey)
	keyPEM, err := pki.EncodeKeyPEM(serverKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch.server = KeyPair{Cert: append(pki.EncodeCertPEM(srv), pki.EncodeCertPEM(ch.inter)...), Key: keyPEM}
	cli := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "service-worker-01", Organization: []string{"MyOrg"}},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		ch.inter, clientKey.Public(), ch.interKey)
	ch.client = tls.Certificate{Certificate: [][]byte{cli.Raw, ch.inter.Raw}, PrivateKey: clientKey, Leaf: cli}
	return ch
}

// crl is an empty CRL signed by ca.
func (ch *mtlsChain) crl(t testing.TB, ca *x509.Certificate, key crypto.Signer) []byte {
	t.Helper()
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCRLPEM(der)
}

// TestNginxIntermediateChain serves the api service with a CA chain of a
// root and an intermediate: the rendered ssl_verify_depth admits clients
// of the intermediate, and every CA of the chain must bring its CRL.
func TestNginxIntermediateChain(t *testing.T) {
	upstream := mtlsNewUpstream(t)
	port := testenv.FreePort(t)
	site := mtlsExampleSite(t, port, upstream.URL)
	api, _ := site.Service("api")
	ch := mtlsNewChain(t, api.ServerName)
	sec := &Secrets{
		CACert:  append(pki.EncodeCertPEM(ch.inter), pki.EncodeCertPEM(ch.root)...),
		CRL:     append(ch.crl(t, ch.inter, ch.interKey), ch.crl(t, ch.root, ch.rootKey)...),
		Servers: map[string]KeyPair{"api": ch.server},
	}

	missing := *sec
	missing.CRL = ch.crl(t, ch.inter, ch.interKey)
	if _, err := NginxFiles(site, "web", &missing); err == nil || !strings.Contains(err.Error(), "Chain Root") {
		t.Errorf("no CRL of the root: error %v, want one naming the root", err)
	}

	files, err := NginxFiles(site, "web", sec)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(files[0].Content)
	if !regexp.MustCompile(`(?m)^\s*ssl_verify_depth\s+1;$`).MatchString(conf) {
		t.Fatalf("want ssl_verify_depth 1 for root + intermediate:\n%s", conf)
	}
	n := mtlsWriteNginx(t, files, true)
	n.check(t)
	n.start(t, port)
	pool := x509.NewCertPool()
	pool.AddCert(ch.root)
	status, body, err := mtlsGet(&mtlsPKI{pool: pool}, api.ServerName, port, &ch.client, "/chain", nil, 0)
	if err != nil || status != http.StatusOK || body != mtlsAllowedDN {
		t.Fatalf("client of the intermediate: status %d, body %q, error %v", status, body, err)
	}
}

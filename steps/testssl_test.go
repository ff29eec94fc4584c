//go:build linux

package steps

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/pki"
	"ztwizard/steps/testenv"
)

// testsslTimeout bounds one testssl.sh run; the checks it is given take
// about a minute on loopback, two and a half on a loaded machine.
const testsslTimeout = 8 * time.Minute

// testsslFinding is one entry of testssl.sh's flat JSON output
// (--jsonfile).
type testsslFinding struct {
	ID       string `json:"id"`
	IP       string `json:"ip"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// testsslPrivateCA lists the findings that a private CA makes meaningless,
// each with the reason; they may be WARN or worse and are not failures.
var testsslPrivateCA = map[string]string{
	// The site CA is in no public trust store, and testssl knows only
	// those: the chain of trust "fails" by design.
	"cert_chain_of_trust": "signed by the site's private CA, which no public trust store holds",
	// A private CA publishes neither a CRL URL nor an OCSP responder:
	// nginx reads the CRL from a file (see the README).
	"cert_revocation": "nginx reads the CRL from a file; no distribution point or OCSP responder is needed",
}

// testsslNotTheServer lists the findings that are not about the server at
// all, each with the reason.
var testsslNotTheServer = map[string]string{
	// Debian's openssl has no GOST engine: a note about the testing tool.
	"engine_problem": "about testssl's own openssl, not the server",
	// testssl 3.0.8 cannot present a client certificate, so its HTTP
	// request gets nginx's 400 page: the security headers of the answers
	// are the upstream application's business, and testssl never sees one.
	"security_headers": "testssl sees nginx's 400 for a request without a client certificate, not the service's answers",
}

// testssl runs testssl.sh against addr (an IP literal) with serverName for
// SNI and returns its findings by id (the first of each id).
func testssl(t *testing.T, ip string, port int, serverName string) map[string]testsslFinding {
	t.Helper()
	bin := testenv.Tool(t, "testssl")
	out := filepath.Join(t.TempDir(), "testssl.json")
	args := []string{
		"--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
		// Generous per-connection limits: a check that times out on a
		// loaded machine reports a WARN.
		"--connect-timeout", "15", "--openssl-timeout", "15",
		"--jsonfile", out,
		"--ip", ip,
		// What is asserted: protocols, cipher categories, the server's
		// defaults (certificate, session handling), headers, and the
		// vulnerability checks.
		"--protocols", "--std", "--server-defaults", "--headers", "--vulnerable",
	}
	if strings.Contains(ip, ":") {
		args = append(args, "-6")
	}
	args = append(args, serverName+":"+strconv.Itoa(port))
	stdout, stderr, err := testenv.RunCmd(t.Context(), testsslTimeout, exec.Command(bin, args...))
	data, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl wrote no JSON: %v (run: %v)\n%s\n%s", rerr, err, stdout, stderr)
	}
	var findings []testsslFinding
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("testssl JSON: %v", err)
	}
	if testing.Verbose() {
		t.Logf("testssl %s:\n%s", ip, stdout)
	}
	if os.Getenv("ZTW_TESTSSL_KEEP") != "" {
		_ = os.WriteFile(os.Getenv("ZTW_TESTSSL_KEEP"), data, 0o644)
	}
	byID := map[string]testsslFinding{}
	for _, f := range findings {
		if _, ok := byID[f.ID]; !ok {
			byID[f.ID] = f
		}
	}
	return byID
}

// TestTestsslVhost runs Debian's testssl.sh against the rendered vhost of
// the example's api service, served by a real nginx on 127.0.0.1 and ::1
// with the vhost exactly as rendered (ssl_verify_client on: the TLS
// handshake completes without a client certificate, nginx answers 400 at
// the HTTP level, so testssl grades the real configuration). No finding is
// "NOT ok" or WARN (or worse) apart from those a private CA makes
// meaningless (testsslPrivateCA); TLS 1.2 and 1.3 are offered and nothing
// older; HSTS is sent when the service asks for it. curl -6 with a valid
// client certificate gets 200.
func TestTestsslVhost(t *testing.T) {
	testenv.Need(t, "nginx", "testssl", "curl")
	upstream := mtlsNewUpstream(t)
	port := testenv.FreePort(t)
	site := mtlsExampleSite(t, port, upstream.URL)
	site.Services[0].HSTS = true
	api, _ := site.Service("api")
	p := testsslPKI(t, api.ServerName)
	files, err := NginxFiles(site, "web", p.secrets())
	if err != nil {
		t.Fatal(err)
	}
	n := mtlsWriteNginx(t, files, true)
	n.check(t)
	n.start(t, port)
	if err := testenv.Listening(net.JoinHostPort("::1", strconv.Itoa(port)))(); err != nil {
		t.Fatalf("nginx does not listen on IPv6: %v", err)
	}

	t.Run("curl -6 with a client certificate", func(t *testing.T) {
		dir := t.TempDir()
		c := p.clients["allowed"]
		certPEM, keyPEM := mtlsClientPEM(t, c)
		certFile := testenv.WriteFile(t, dir, "client.crt", certPEM)
		keyFile := testenv.WriteFile(t, dir, "client.key", keyPEM)
		caFile := testenv.WriteFile(t, dir, "ca.pem", p.caPEM)
		url := "https://" + api.ServerName + ":" + strconv.Itoa(port) + "/curl6"
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"with certificate", []string{"--cert", certFile, "--key", keyFile}, "200"},
			{"without certificate", nil, "400"},
		} {
			args := append([]string{"-6", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
				"--cacert", caFile, "--resolve", api.ServerName + ":" + strconv.Itoa(port) + ":[::1]"}, tc.args...)
			out, errOut, err := testenv.RunCmd(t.Context(), 20*time.Second, exec.Command("curl", append(args, url)...))
			if err != nil || out != tc.want {
				t.Errorf("curl -6 %s: %q, want %s (%v %s)", tc.name, out, tc.want, err, errOut)
			}
		}
		if _, ok := upstream.headers("/curl6"); !ok {
			t.Error("the upstream was not reached over IPv6")
		}
	})

	ips := []string{"127.0.0.1", "::1"}
	if v := os.Getenv("ZTW_TESTSSL_IPS"); v != "" {
		ips = strings.Fields(v)
	}
	// One after the other: run side by side they take three times as long
	// and time out on connections.
	for _, ip := range ips {
		t.Run("testssl "+ip, func(t *testing.T) {
			f := testssl(t, ip, port, api.ServerName)
			// A check that could not connect graded nothing (testssl says so
			// with a WARN, now and then on a loaded machine): up to two more
			// runs. What testssl saw of sessions is logged with it: the
			// ticket resumption check runs only where testssl saw a ticket
			// lifetime, and this server issues no tickets.
			for range 2 {
				bad := testsslBad(f)
				if len(bad) == 0 || slices.ContainsFunc(bad, func(fi testsslFinding) bool {
					return !strings.Contains(fi.Finding, "connect problem")
				}) {
					break
				}
				t.Logf("testssl could not connect for %v (TLS_session_ticket %q, SSL_sessionID_support %q); running it again",
					bad, f["TLS_session_ticket"].Finding, f["SSL_sessionID_support"].Finding)
				f = testssl(t, ip, port, api.ServerName)
			}
			for _, fi := range testsslBad(f) {
				t.Errorf("%s: %s %q", fi.ID, fi.Severity, fi.Finding)
			}
			for id, want := range map[string]string{
				"SSLv2": "not offered", "SSLv3": "not offered", "TLS1": "not offered", "TLS1_1": "not offered",
				"TLS1_2": "offered", "TLS1_3": "offered",
				"HSTS_time": "730 days",
			} {
				got, ok := f[id]
				if !ok || !strings.HasPrefix(got.Finding, want) {
					t.Errorf("%s: %q, want %q...", id, got.Finding, want)
				}
			}
		})
	}
}

// testsslPKI is a CA and server certificate with the site's default
// lifetimes (testssl flags a certificate that expires within 60 days), a
// client certificate for service-worker-01 and an empty CRL.
func testsslPKI(t *testing.T, serverName string) *mtlsPKI {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	p := &mtlsPKI{servers: map[string]KeyPair{}, clients: map[string]tls.Certificate{}}
	ca, err := pki.NewRoot(pki.Subject{CommonName: "Internal Root CA", Organization: "MyOrg", Country: "NO"},
		mtlsKey(t), DefaultCAValidity.D(), now, mtlsSerial(t))
	if err != nil {
		t.Fatal(err)
	}
	p.ca, p.caPEM = ca, pki.EncodeCertPEM(ca.Cert)
	key := mtlsKey(t)
	cert, err := ca.IssueServer(key.Public(), serverName, []string{serverName}, nil, DefaultCertValidity.D(), now, mtlsSerial(t))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.servers["api"] = KeyPair{Cert: pki.EncodeCertPEM(cert), Key: keyPEM}
	ckey := mtlsKey(t)
	client, err := ca.IssueClient(ckey.Public(), "service-worker-01", "MyOrg", DefaultCertValidity.D(), now, mtlsSerial(t))
	if err != nil {
		t.Fatal(err)
	}
	p.clients["allowed"] = tls.Certificate{Certificate: [][]byte{client.Raw}, PrivateKey: ckey, Leaf: client}
	der, err := ca.CRL(nil, big.NewInt(1), now, DefaultCRLValidity.D())
	if err != nil {
		t.Fatal(err)
	}
	p.crlPEM = pki.EncodeCRLPEM(der)
	return p
}

// mtlsClientPEM returns a client certificate and its key in PEM.
func mtlsClientPEM(t *testing.T, c tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, err := pki.EncodeKeyPEM(c.PrivateKey.(crypto.Signer), nil)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCertPEM(c.Leaf), keyPEM
}

// testsslBad returns the findings that are WARN or worse, or "NOT ok",
// apart from the listed ones (testsslPrivateCA, testsslNotTheServer).
func testsslBad(findings map[string]testsslFinding) []testsslFinding {
	var out []testsslFinding
	for _, fi := range findings {
		bad := fi.Severity == "WARN" || fi.Severity == "MEDIUM" || fi.Severity == "HIGH" || fi.Severity == "CRITICAL" ||
			strings.Contains(fi.Finding, "NOT ok")
		if !bad {
			continue
		}
		if _, ok := testsslPrivateCA[testsslBaseID(fi.ID)]; ok {
			continue
		}
		if _, ok := testsslNotTheServer[testsslBaseID(fi.ID)]; ok {
			continue
		}
		out = append(out, fi)
	}
	slices.SortFunc(out, func(a, b testsslFinding) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// testsslBaseID strips the certificate number testssl appends to
// per-certificate ids ("cert_chain_of_trust <cert#1>").
func testsslBaseID(id string) string {
	base, _, _ := strings.Cut(id, " ")
	return base
}

// TestNginxResumptionAfterRevocation: a resumed TLS session skips nginx's
// client certificate check, so the rendered vhost resumes none. A client
// that offers its session gets a full handshake every time, its
// certificate is revoked and only the CRL file replaced and nginx reloaded
// (what a pull does): the next request gets 400.
func TestNginxResumptionAfterRevocation(t *testing.T) {
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

	cert := p.clients["allowed"]
	client := &http.Client{Timeout: mtlsRequestTimeout, Transport: &http.Transport{
		DisableKeepAlives: true, // a new connection, and handshake, per request
		TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: api.ServerName,
			Certificates: []tls.Certificate{cert}, ClientSessionCache: tls.NewLRUClientSessionCache(8)},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		},
	}}
	get := func() (int, bool) {
		t.Helper()
		resp, err := client.Get("https://" + api.ServerName + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.DidResume
	}
	if status, _ := get(); status != http.StatusOK {
		t.Fatalf("first request: %d", status)
	}
	for range 3 {
		if status, resumed := get(); status != http.StatusOK || resumed {
			t.Fatalf("a later request: %d, resumed %v; want 200 from a full handshake", status, resumed)
		}
	}

	// Revoke the client's certificate; only the CRL changes.
	now := time.Now().UTC().Truncate(time.Second)
	der, err := p.ca.CRL([]pki.Revoked{
		{Serial: p.clients["revoked"].Leaf.SerialNumber, At: now.Add(-time.Minute)},
		{Serial: cert.Leaf.SerialNumber, At: now},
	}, big.NewInt(2), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.dir, "root", CRLPath), pki.EncodeCRLPEM(der), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := testenv.RunCmd(t.Context(), mtlsNginxCheckTimeout, exec.Command(n.bin, n.args("-s", "reload")...)); err != nil {
		t.Fatal(err)
	}
	// The reload takes effect once the old worker has gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, resumed := get()
		if status == http.StatusBadRequest && !resumed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the revocation: %d, resumed %v; want 400 from a full handshake", status, resumed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

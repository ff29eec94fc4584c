package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/monitor"
	"ztwizard/steps/testenv"
)

// The time lab: "time runs, nobody acts" in network namespaces. A CA host
// and two nodes are each a testenv.Machine (their own network, mount and
// UTS namespaces; their own /etc, /var, /run, /root and /tmp) on one
// bridge, meshed over userspace WireGuard by their applied bundles; each
// runs a real nginx, the nodes with their mTLS service, all with their real
// ruleset. ztwizard lives at its units' path (/usr/local/bin, a folder of
// the lab's bind-mounted in each machine). systemd is not PID 1 here: the
// lab runs the timers ztwizard wrote as systemd would (timers_test.go),
// and the one systemctl the units and `node pull` call is the lab's, which
// reloads and restarts the machine's nginx.
//
// The CA key is encrypted. `ztwizard ca schedule` encrypts its passphrase
// with the real systemd-creds (the machine's own credential secret), and
// the lab gives the CRL service what LoadCredentialEncrypted= would: the
// credential decrypted by systemd-creds into /run/credentials/UNIT/NAME,
// the path %d/NAME in its ExecStart, for the run only. The clear-text
// passphrase file is gone once the schedule is set up; the admin's one
// command (ca revoke) brings it for that command alone.

// timeLabSite: minute-scale validities (ca.test_timescale), the CA host
// "ca" publishing to app1 and app2, each with an mTLS service that admits
// both clients; revoking one is the only difference between them.
const timeLabSite = `version: 1
site: timelab
ca:
  subject: {common_name: Timelab Root CA, organization: Lab}
  host: ca
  validity: 24h
  cert_validity: %s
  crl_validity: %s
  test_timescale: true
ssh:
  admin_cidrs: [10.78.10.0/24]
  users:
    - {name: alice, principals: [root]}
wireguard:
  network: 10.101.0.0/24
nodes:
  - {name: ca, endpoint: "10.78.1.1:51820", address: 10.101.0.1, peers: [app1, app2]}
  - {name: app1, endpoint: "10.78.1.2:51820", address: 10.101.0.2, peers: [ca]}
  - {name: app2, endpoint: "10.78.1.3:51820", address: 10.101.0.3, peers: [ca]}
services:
  - {name: api1, node: app1, server_name: api1.lab.example, listen: 443, upstream: "http://127.0.0.1:8080", allow: [good, bad]}
  - {name: api2, node: app2, server_name: api2.lab.example, listen: 443, upstream: "http://127.0.0.1:8080", allow: [good, bad]}
clients:
  - {name: good, organization: Lab}
  - {name: bad, organization: Lab}
firewall:
  public_tcp: [443]
`

// Where the admin keeps things on the CA host.
const (
	labSite     = "/root/site.yaml"
	labPass     = "/root/ca.pass"
	labClients  = "/root/clients"
	labPassword = "correct horse battery staple"
)

// labSystemctl is the lab's systemctl, bind-mounted over the machine's
// /usr/bin/systemctl once the lab's machines are set up: it does what
// systemd would to the machine's nginx (its pid file in the machine's
// /run); every other unit is one that does not run here (sshd: the lab
// makes no SSH connections), which systemd's try- verbs leave alone.
// Anything else is refused. Each call is logged.
const labSystemctl = `#!/bin/sh
echo "$*" >> /run/ztlab-systemctl.log
case "$2" in
nginx|nginx.service) ;;
*) case "$1" in
	is-active) exit 3 ;;
	try-restart|try-reload-or-restart) exit 0 ;;
	*) echo "lab systemctl: $* is not supported" >&2; exit 1 ;;
	esac ;;
esac
running() { [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; }
stop() {
	running || return 0
	pid=$(cat /run/nginx.pid)
	nginx -s stop
	i=0
	while kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
}
case "$1" in
is-active) running ;;
start) running || exec nginx ;;
stop) stop ;;
reload) running || exit 1; exec nginx -s reload ;;
try-reload-or-restart) running || exit 0; exec nginx -s reload ;;
reload-or-restart) running && exec nginx -s reload; exec nginx ;;
try-restart) running || exit 0; stop; exec nginx ;;
restart) stop; exec nginx ;;
*) echo "lab systemctl: $* is not supported" >&2; exit 1 ;;
esac
`

type timeLab struct {
	t        *testing.T
	ca       *testenv.Machine
	nodes    []*testenv.Machine // app1, app2
	client   string             // the probes' network namespace
	underlay map[string]string  // machine -> underlay address
	server   map[string]string  // node -> its service's server_name
	caCert   *x509.CertPool
	certs    map[string]tls.Certificate // client -> its certificate
	runs     timerRuns
	// startTimers starts running m's timers, from now on (its boot).
	startTimers func(m *testenv.Machine)
}

// ztw runs ztwizard (at its units' path) in m and fails the test unless it
// exits 0.
func (l *timeLab) ztw(m *testenv.Machine, args ...string) string {
	l.t.Helper()
	return m.Must(l.t, append([]string{steps.BinaryPath}, args...)...)
}

// admin runs a CA command on the CA host with the passphrase, which is on
// disk for that command only.
func (l *timeLab) admin(args ...string) string {
	l.t.Helper()
	testenv.WriteFile(l.t, l.ca.Path("/root"), "ca.pass", []byte(labPassword+"\n"))
	defer os.Remove(l.ca.Path(labPass))
	return l.ztw(l.ca, append([]string{"--passphrase-file", labPass, "-c", labSite}, args...)...)
}

// copyFile copies path from one machine to the same path on another.
func (l *timeLab) copyFile(from, to *testenv.Machine, path string) {
	l.t.Helper()
	data, err := os.ReadFile(from.Path(path))
	if err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(to.Path(path), data, 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// newTimeLab builds the lab for a site with these validities: the CA
// (its key encrypted) and the clients, every node requested, bundled and
// applied, nginx and the services' upstreams running, the CA host's
// schedule set up; its timers are not started yet (startTimers).
func newTimeLab(t *testing.T, certValidity, crlValidity string) *timeLab {
	t.Helper()
	if testing.Short() {
		t.Skip("namespaces, nginx and minutes of timers: `make test` runs it")
	}
	requireLab(t)
	testenv.Need(t, "systemd-creds", "nsenter", "install")
	scratch := scratchDir(t)
	l := &timeLab{t: t, underlay: map[string]string{}, server: map[string]string{"app1": "api1.lab.example", "app2": "api2.lab.example"},
		certs: map[string]tls.Certificate{}}
	br := testenv.NewBridge(t)
	site := fmt.Sprintf(timeLabSite, certValidity, crlValidity)
	for i, name := range []string{"ca", "app1", "app2"} {
		dir := scratch
		if name == "ca" {
			// systemd-creds refuses a credential secret on tmpfs.
			dir = ""
		}
		m := testenv.NewMachine(t, name, dir, testenv.MachineOptions{Setup: func(m *testenv.Machine) {
			for _, d := range []string{"/var/log/nginx", "/var/lib/nginx"} {
				if err := os.MkdirAll(m.Path(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}})
		l.underlay[name] = fmt.Sprintf("10.78.1.%d", i+1)
		br.Attach(t, m.Netns, []string{l.underlay[name] + "/24"}, nil)
		// ztwizard where its units run it: the lab's folder over the
		// machine's /usr/local/bin (the machine's own copy of the binary).
		if err := os.MkdirAll(m.Path("/run/ztlab-bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		testenv.MustRun(t, "cp", bin, m.Path("/run/ztlab-bin/ztwizard"))
		m.Must(t, "mount", "--bind", "/run/ztlab-bin", "/usr/local/bin")
		if name == "ca" {
			l.ca = m
		} else {
			l.nodes = append(l.nodes, m)
		}
	}
	l.client = testenv.NewNetns(t, "ztl-client-")
	br.Attach(t, l.client, []string{"10.78.1.100/24"}, nil)
	// Cleanups run last registered first: the timers stop before the
	// machines go.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		l.runs.wg.Wait()
		if t.Failed() {
			for _, r := range l.runs.since(time.Time{}, "", "") {
				if !r.ok && r.skipped == "" {
					t.Logf("failed run: %s", r)
				}
			}
		}
	})
	l.startTimers = func(m *testenv.Machine) {
		for _, lt := range machineTimers(t, m) {
			l.runs.start(ctx, lt)
		}
	}

	// The CA, its key encrypted.
	testenv.WriteFile(t, l.ca.Path("/root"), "site.yaml", []byte(site))
	l.admin("ca", "init")
	fp := strings.Fields(l.ztw(l.ca, "-c", labSite, "ca", "fingerprint"))[0]
	for _, c := range []string{"good", "bad"} {
		l.admin("ca", "issue", "--name", c, "--out", labClients+"/"+c)
		cert, err := tls.LoadX509KeyPair(l.ca.Path(labClients+"/"+c+"/"+c+".crt"), l.ca.Path(labClients+"/"+c+"/"+c+".key"))
		if err != nil {
			t.Fatal(err)
		}
		l.certs[c] = cert
	}
	caPEM, err := os.ReadFile(l.ca.Path(labClients + "/good/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	l.caCert = x509.NewCertPool()
	if !l.caCert.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in the client's bundle")
	}

	// Every node (the CA host is one: it publishes on its mesh address)
	// makes its request and the CA host imports it; then the CA host
	// bundles each, and each applies its bundle and starts nginx, as its
	// package would.
	all := append([]*testenv.Machine{l.ca}, l.nodes...)
	for _, m := range all {
		req := "/root/" + m.Name + ".req"
		testenv.WriteFile(t, m.Path("/root"), "site.yaml", []byte(site))
		l.ztw(m, "-c", labSite, "node", "request", "--node", m.Name, "--out", req)
		if m != l.ca {
			l.copyFile(m, l.ca, req)
		}
		l.admin("node", "import", req)
	}
	for _, m := range all {
		ztb := "/root/" + m.Name + ".ztb"
		l.admin("bundle", "--node", m.Name, "--out", ztb)
		if m != l.ca {
			l.copyFile(l.ca, m, ztb)
		}
		out := l.ztw(m, "apply", "--bundle", ztb, "--ca-fingerprint", fp, "--no-confirm")
		t.Logf("%s: %s", m.Name, lastLine(out))
		m.Must(t, "nginx")
	}
	// The services' upstream on each node.
	for _, m := range l.nodes {
		var ln net.Listener
		if err := testenv.InNetns(m.Netns, func() (err error) {
			ln, err = net.Listen("tcp", "127.0.0.1:8080")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "upstream %s: %s\n", m.Name, r.Header.Get("X-Client-DN"))
		}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}

	// The unattended refresh, the passphrase into systemd-creds; the
	// clear-text file goes, as the README says.
	testenv.WriteFile(t, l.ca.Path("/root"), "ca.pass", []byte(labPassword+"\n"))
	t.Logf("ca schedule:\n%s", l.ztw(l.ca, "--passphrase-file", labPass, "-c", labSite, "ca", "schedule"))
	if err := os.Remove(l.ca.Path(labPass)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.ca.Path(steps.PassphraseCredentialPath)); err != nil {
		t.Fatalf("ca schedule left no encrypted credential: %v", err)
	}

	// From here on the machines are "under systemd": the lab's systemctl.
	for _, m := range append([]*testenv.Machine{l.ca}, l.nodes...) {
		shim := testenv.WriteFile(t, m.Path("/run"), "ztlab-systemctl", []byte(labSystemctl))
		if err := os.Chmod(shim, 0o755); err != nil {
			t.Fatal(err)
		}
		m.Must(t, "mount", "--bind", "/run/ztlab-systemctl", "/usr/bin/systemctl")
		if err := os.MkdirAll(m.Path("/run/systemd/system"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// probe is one request from the client namespace to node's service with
// client's certificate, on a new connection (no session to resume); the
// server's certificate is verified against the site's CA for its name and
// at this time. It returns the HTTP status, or the error, and the serial
// of the server's certificate.
func (l *timeLab) probe(node, client string) (int, string, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: l.caCert, ServerName: l.server[node],
			Certificates: []tls.Certificate{l.certs[client]}},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := testenv.InNetns(l.client, func() (err error) {
				c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + l.underlay[node] + "/")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.Text(16), nil
}

// nodeCRL is the CRL installed on m.
func (l *timeLab) nodeCRL(m *testenv.Machine) *x509.RevocationList {
	l.t.Helper()
	data, err := os.ReadFile(m.Path(steps.CRLPath))
	if err != nil {
		l.t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		l.t.Fatalf("%s: %s is not PEM", m.Name, steps.CRLPath)
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		l.t.Fatalf("%s: %v", m.Name, err)
	}
	return crl
}

// status runs `ztwizard status` on m.
func (l *timeLab) status(m *testenv.Machine) testenv.Result {
	l.t.Helper()
	return m.Run(l.t, testenv.CmdTimeout, []string{"TZ=UTC"}, steps.BinaryPath, "status")
}

// waitRun waits until a run of unit on m that started at or after from
// has succeeded.
func (l *timeLab) waitRun(m *testenv.Machine, unit string, from time.Time, within time.Duration) unitRun {
	l.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, r := range l.runs.since(from, m.Name, unit) {
			if r.ok {
				return r
			}
		}
		if time.Now().After(deadline) {
			var runs []string
			for _, r := range l.runs.since(from, m.Name, unit) {
				runs = append(runs, r.String())
			}
			l.t.Fatalf("%s: no successful run of %s within %v:\n%s", m.Name, unit, within, strings.Join(runs, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// timerOf is m's timer that starts service.
func timerOf(t *testing.T, m *testenv.Machine, service string) *labTimer {
	t.Helper()
	for _, lt := range machineTimers(t, m) {
		if lt.service == service {
			return lt
		}
	}
	t.Fatalf("%s: no timer starts %s", m.Name, service)
	return nil
}

// TestTimeRunsNobodyActs is issue 12's proof in namespaces: a site with
// minute-scale validities and an encrypted CA key runs on its own timers
// for three CRL periods and until every node serves a renewed server
// certificate. At every probe a valid client gets 200 from every node's
// service (whose certificate verifies at that moment), a client revoked at
// the start gets 400 from every node within one pull interval, `ztwizard
// status` exits 0 on every machine, no installed CRL is past its
// nextUpdate, and every timer run succeeds. Then the CA host stops
// serving: on each node status turns 1 while its CRL is still in force.
func TestTimeRunsNobodyActs(t *testing.T) {
	const crlValidity = time.Minute
	const certValidity = 5 * time.Minute // renewed at two thirds: 3m20s
	const probeEvery = 2 * time.Second
	l := newTimeLab(t, "5m", "1m")
	machines := append([]*testenv.Machine{l.ca}, l.nodes...)
	issued := map[string]string{} // node -> the serial its service served first
	hostCert := map[string][]byte{}
	for _, m := range l.nodes {
		hostCert[m.Name] = readFile(t, m.Path(steps.SSHHostCertPath))
	}

	// "Boot": the CA host's timers first; its first CRL run publishes
	// what the nodes pull.
	boot := time.Now()
	l.startTimers(l.ca)
	caCRL := timerOf(t, l.ca, steps.CACRLUnit)
	firstPublish := l.waitRun(l.ca, steps.CACRLUnit, boot, caCRL.boot+caCRL.jitter+time.Minute)
	for _, m := range l.nodes {
		l.startTimers(m)
	}
	pull := timerOf(t, l.nodes[0], steps.PullUnit)
	t.Logf("timers: CA CRL every %v (first after %v), pull every %v + up to %v", caCRL.every, caCRL.boot, pull.every, pull.jitter)
	for _, m := range l.nodes {
		l.waitRun(m, steps.PullUnit, boot, pull.boot+pull.jitter+time.Minute)
	}
	for _, m := range l.nodes {
		for _, c := range []string{"good", "bad"} {
			code, serial, err := l.probe(m.Name, c)
			if code != http.StatusOK {
				t.Fatalf("before the revocation: %s -> %s: %d %v", c, m.Name, code, err)
			}
			issued[m.Name] = serial
		}
	}

	// The admin revokes bad; then nobody acts.
	l.admin("ca", "revoke", "--name", "bad")
	revokedAt := time.Now()
	refused := map[string]time.Time{}
	crls := map[string]map[string]bool{} // node -> CRL numbers installed
	renewed := map[string]time.Time{}    // node -> when it first served a renewed certificate
	// Three CRL periods, and on until every node serves its renewed
	// certificate (at most until the old one's warning window).
	end := revokedAt.Add(3*crlValidity + probeEvery)
	limit := revokedAt.Add(certValidity * 5 / 6)
	rounds, errs := 0, 0
	fail := func(format string, a ...any) {
		t.Helper()
		t.Errorf("%s: "+format, append([]any{time.Now().Format("15:04:05.000")}, a...)...)
		if errs++; errs > 8 {
			t.FailNow()
		}
	}
	for now := time.Now(); now.Before(end) || len(renewed) < len(l.nodes) && now.Before(limit); now = time.Now() {
		round := time.Now()
		rounds++
		for _, m := range l.nodes {
			code, serial, err := l.probe(m.Name, "good")
			if code != http.StatusOK {
				fail("good -> %s: %d %v", m.Name, code, err)
			} else if serial != issued[m.Name] && renewed[m.Name].IsZero() {
				renewed[m.Name] = time.Now()
				t.Logf("%s serves a renewed certificate %v after the revocation (serial %s, was %s)", m.Name,
					renewed[m.Name].Sub(revokedAt).Round(time.Second), serial, issued[m.Name])
			}
			code, _, err = l.probe(m.Name, "bad")
			at := time.Now()
			switch {
			case code == http.StatusBadRequest && refused[m.Name].IsZero():
				refused[m.Name] = at
			case refused[m.Name].IsZero() && code != http.StatusOK:
				fail("bad -> %s before it refused it: %d %v", m.Name, code, err)
			case !refused[m.Name].IsZero() && code != http.StatusBadRequest:
				fail("bad -> %s after it refused it: %d %v", m.Name, code, err)
			}
			crl := l.nodeCRL(m)
			if !at.Before(crl.NextUpdate) {
				fail("%s: the installed CRL %s lapsed at %s", m.Name, crl.Number, crl.NextUpdate.Format("15:04:05"))
			}
			if crls[m.Name] == nil {
				crls[m.Name] = map[string]bool{}
			}
			crls[m.Name][crl.Number.String()] = true
		}
		for _, m := range machines {
			if r := l.status(m); r.Code != 0 {
				fail("%s: status exit %d:\n%s%s", m.Name, r.Code, r.Stdout, r.Stderr)
			}
		}
		time.Sleep(time.Until(round.Add(probeEvery)))
	}
	bound := pull.every + pull.jitter + probeEvery + 5*time.Second
	for _, m := range l.nodes {
		if refused[m.Name].IsZero() {
			t.Errorf("%s never refused the revoked client", m.Name)
			continue
		}
		took := refused[m.Name].Sub(revokedAt)
		t.Logf("%s refused the revoked client %v after ca revoke", m.Name, took.Round(100*time.Millisecond))
		if took > bound {
			t.Errorf("%s refused the revoked client %v after ca revoke, want within one pull interval (%v + up to %v, the probe period and 5s)",
				m.Name, took.Round(100*time.Millisecond), pull.every, pull.jitter)
		}
		// Three CRL periods: the CRL re-signed at least three times.
		if n := len(crls[m.Name]); n < 4 {
			t.Errorf("%s installed %d CRLs over %v, want at least 4", m.Name, n, 3*crlValidity)
		}
		// One leaf renewal: the service's certificate, and the SSH host
		// certificate the same run renews.
		if renewed[m.Name].IsZero() {
			t.Errorf("%s never served a renewed certificate", m.Name)
		}
		if bytes.Equal(hostCert[m.Name], readFile(t, m.Path(steps.SSHHostCertPath))) {
			t.Errorf("%s: the SSH host certificate was not renewed", m.Name)
		}
		// What the pulls asked systemd for: reloads of nginx for the CRLs
		// (the revocation's too: a restart would drop the valid client's
		// connections) and the certificate, sshd's reload for its host
		// certificate.
		calls := string(readFile(t, m.Path("/run/ztlab-systemctl.log")))
		for _, want := range []string{"try-reload-or-restart nginx.service\n", "try-reload-or-restart ssh.service\n"} {
			if !strings.Contains(calls, want) {
				t.Errorf("%s: no systemctl %q; the calls:\n%s", m.Name, strings.TrimSpace(want), calls)
			}
		}
		if regexp.MustCompile(`(?m)^(try-)?restart nginx`).MatchString(calls) {
			t.Errorf("%s: nginx was restarted; the calls:\n%s", m.Name, calls)
		}
	}
	// Every run succeeded, but a pull that came before the CA host's first
	// CRL run had published (at "boot" both timers are due at once): that
	// one found nothing published yet and failed, as it would under
	// systemd; the next one pulled.
	stopAt := time.Now()
	for _, r := range l.runs.since(boot, "", "") {
		early := r.unit == steps.PullUnit && r.start.Before(firstPublish.end) && strings.Contains(r.log, "not published (HTTP 404)")
		if !r.ok && r.skipped == "" && r.start.Before(stopAt) && !early {
			fail("a timer run failed: %s", r)
		}
	}
	count := map[string]int{}
	for _, r := range l.runs.since(boot, "", "") {
		if r.skipped == "" {
			count[r.machine+" "+r.unit]++
		}
	}
	t.Logf("%d probe rounds over %v; timer runs: %v", rounds, stopAt.Sub(revokedAt).Round(time.Second), count)

	// The CA host stops serving: the nodes' pulls fail, and status turns 1
	// on each before its CRL lapses.
	l.ca.Must(t, "systemctl", "stop", "nginx.service")
	stopAt = time.Now()
	warned := map[string]bool{}
	for len(warned) < len(l.nodes) {
		for _, m := range l.nodes {
			if warned[m.Name] {
				continue
			}
			r := l.status(m)
			now := time.Now()
			crl := l.nodeCRL(m)
			switch {
			case !now.Before(crl.NextUpdate):
				t.Fatalf("%s: the CRL lapsed (%s) before status exited 1 (%d):\n%s", m.Name, crl.NextUpdate.Format("15:04:05"), r.Code, r.Stdout)
			case r.Code == 1:
				warned[m.Name] = true
				t.Logf("%s: status exit 1 %v after the CA host stopped, %v before the CRL's nextUpdate",
					m.Name, now.Sub(stopAt).Round(100*time.Millisecond), crl.NextUpdate.Sub(now).Round(100*time.Millisecond))
				// What is due is the CRL, nothing else.
				var rep monitor.Report
				j := m.Run(t, testenv.CmdTimeout, []string{"TZ=UTC"}, steps.BinaryPath, "status", "--json")
				if err := json.Unmarshal([]byte(j.Stdout), &rep); err != nil {
					t.Fatalf("%s: status --json: %v\n%s", m.Name, err, j.Stdout)
				}
				var due []string
				for _, it := range rep.Items {
					if it.Due {
						due = append(due, it.Kind+" "+it.State)
					}
				}
				if j.Code != 1 || len(rep.Problems) != 0 || len(due) == 0 || strings.Join(due, "") != strings.Repeat(authority.KindCRL+" "+monitor.StateDue, len(due)) {
					t.Errorf("%s: status --json exit %d, due %q, problems %v; want the CRL due alone:\n%s", m.Name, j.Code, due, rep.Problems, r.Stdout)
				}
				if code, _, err := l.probe(m.Name, "good"); code != http.StatusOK {
					t.Errorf("%s: when status warned, good got %d %v: something lapsed already", m.Name, code, err)
				}
			case r.Code != 0:
				t.Fatalf("%s: status exit %d:\n%s%s", m.Name, r.Code, r.Stdout, r.Stderr)
			}
		}
		time.Sleep(time.Second)
	}
	for _, m := range l.nodes {
		failed := 0
		for _, r := range l.runs.since(stopAt, m.Name, steps.PullUnit) {
			if !r.ok {
				failed++
			}
		}
		if failed == 0 {
			t.Errorf("%s: no pull failed after the CA host stopped serving", m.Name)
		}
	}
}

// On a CA host that is also a node, `ca crl --out` writes the node's CRL
// and `--publish` what its own pull fetches: the published one comes first,
// so a pull between the two never finds it older than the installed one.
func TestCACRLPublishesBeforeItsOwnCopy(t *testing.T) {
	dir, st := workdir(t)
	must(t, dir, "ca", "init", "--state", st)
	pub := filepath.Join(dir, "publish")
	r := ztw(t, dir, "ca", "crl", "--state", st, "--publish", pub, "--out", filepath.Join(dir, "missing", "crl.pem"))
	if r.code != 1 {
		t.Fatalf("ca crl with an --out that cannot be written: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(pub, steps.PublishedCRL)); err != nil {
		t.Fatalf("the CRL was not published before --out was written: %v", err)
	}
}

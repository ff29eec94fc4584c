package sshca

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"ztwizard/steps/testenv"
)

// listCert writes the certificate to dir and returns the trimmed lines of
// ssh-keygen -L.
func listCert(t *testing.T, dir string, c *ssh.Certificate) []string {
	t.Helper()
	path := testenv.WriteFile(t, dir, "key-cert.pub", []byte(CertLine(c, "test")))
	var lines []string
	for l := range strings.Lines(mustKeygen(t, dir, "-L", "-f", path)) {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines
}

// fieldRE matches a field header of ssh-keygen -L output, such as "Serial: 42".
var fieldRE = regexp.MustCompile(`^[A-Z][A-Za-z ]*:`)

// section returns the list items that follow header in ssh-keygen -L output.
func section(lines []string, header string) []string {
	i := slices.Index(lines, header)
	if i < 0 {
		return nil
	}
	var out []string
	for _, l := range lines[i+1:] {
		if fieldRE.MatchString(l) {
			break
		}
		out = append(out, l)
	}
	return out
}

func wantLines(t *testing.T, lines []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("ssh-keygen -L lacks %q; got:\n%s", w, strings.Join(lines, "\n"))
		}
	}
}

func TestSignUserListedBySSHKeygen(t *testing.T) {
	dir := t.TempDir()
	ca, caPub := newKey(t)
	_, userPub := newKey(t)
	c, err := SignUser(ca, Request{Key: userPub, KeyID: "alice@laptop", Principals: []string{"alice", "devops"}, Validity: 4 * time.Hour, Serial: 42}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	lines := listCert(t, dir, c)
	wantLines(t, lines,
		"Type: ssh-ed25519-cert-v01@openssh.com user certificate",
		"Signing CA: ED25519 "+ssh.FingerprintSHA256(caPub)+" (using ssh-ed25519)",
		`Key ID: "alice@laptop"`,
		"Serial: 42",
		"Valid: from 2025-06-01T11:55:00 to 2025-06-01T16:00:00",
		"Critical Options: (none)",
	)
	if got := section(lines, "Principals:"); !slices.Equal(got, []string{"alice", "devops"}) {
		t.Errorf("principals = %q", got)
	}
	// No forwarding unless granted.
	if got, want := section(lines, "Extensions:"), []string{"permit-pty"}; !slices.Equal(got, want) {
		t.Errorf("extensions = %q, want %q", got, want)
	}
}

func TestSignUserForwarding(t *testing.T) {
	dir := t.TempDir()
	ca, _ := newKey(t)
	_, userPub := newKey(t)
	tests := []struct {
		forwarding []string
		want       []string
	}{
		{nil, []string{"permit-pty"}},
		{[]string{ForwardAgent}, []string{"permit-agent-forwarding", "permit-pty"}},
		{[]string{ForwardPort}, []string{"permit-port-forwarding", "permit-pty"}},
		{[]string{ForwardPort, ForwardAgent}, []string{"permit-agent-forwarding", "permit-port-forwarding", "permit-pty"}},
	}
	for _, tc := range tests {
		c, err := SignUser(ca, Request{Key: userPub, KeyID: "ops", Principals: []string{"root"}, Validity: time.Hour, Serial: 9, Forwarding: tc.forwarding}, testNow)
		if err != nil {
			t.Fatal(err)
		}
		if got := section(listCert(t, dir, c), "Extensions:"); !slices.Equal(got, tc.want) {
			t.Errorf("forwarding %q: extensions = %q, want %q", tc.forwarding, got, tc.want)
		}
	}
	for _, bad := range []string{"x11", "", "Agent", "tunnel"} {
		_, err := SignUser(ca, Request{Key: userPub, KeyID: "ops", Principals: []string{"root"}, Validity: time.Hour, Serial: 9, Forwarding: []string{bad}}, testNow)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("forwarding %q: err = %v, want one naming it", bad, err)
		}
	}
	if _, err := SignHost(ca, Request{Key: userPub, KeyID: "h", Principals: []string{"h.example"}, Validity: time.Hour, Serial: 2, Forwarding: []string{ForwardPort}}, testNow); err == nil {
		t.Error("a host certificate with forwarding was signed")
	}
}

func TestSignHostListedBySSHKeygen(t *testing.T) {
	dir := t.TempDir()
	ca, caPub := newKey(t)
	_, hostPub := newKey(t)
	c, err := SignHost(ca, Request{Key: hostPub, KeyID: "web1", Principals: []string{"web1.example.com", "web1", "10.0.0.5", "fd00::5"}, Validity: 24 * time.Hour, Serial: 7}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	lines := listCert(t, dir, c)
	wantLines(t, lines,
		"Type: ssh-ed25519-cert-v01@openssh.com host certificate",
		"Signing CA: ED25519 "+ssh.FingerprintSHA256(caPub)+" (using ssh-ed25519)",
		`Key ID: "web1"`,
		"Serial: 7",
		"Valid: from 2025-06-01T11:55:00 to 2025-06-02T12:00:00",
		"Critical Options: (none)",
		"Extensions: (none)",
	)
	if got := section(lines, "Principals:"); !slices.Equal(got, []string{"web1.example.com", "web1", "10.0.0.5", "fd00::5"}) {
		t.Errorf("principals = %q", got)
	}
}

func TestSignWithRSACAUsesSHA512(t *testing.T) {
	dir := t.TempDir()
	mustKeygen(t, dir, "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "rsa-ca", "-f", "ca")
	ca, err := DecodePrivateKey(readFile(t, filepath.Join(dir, "ca")), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, userPub := newKey(t)
	for _, sign := range []func() (*ssh.Certificate, error){
		func() (*ssh.Certificate, error) {
			return SignUser(ca, Request{Key: userPub, KeyID: "u", Principals: []string{"alice"}, Validity: time.Hour, Serial: 1}, testNow)
		},
		func() (*ssh.Certificate, error) {
			return SignHost(ca, Request{Key: userPub, KeyID: "h", Principals: []string{"h.example"}, Validity: time.Hour, Serial: 2}, testNow)
		},
	} {
		c, err := sign()
		if err != nil {
			t.Fatal(err)
		}
		if c.Signature.Format != ssh.KeyAlgoRSASHA512 {
			t.Errorf("signature format %q, want %q", c.Signature.Format, ssh.KeyAlgoRSASHA512)
		}
		lines := listCert(t, dir, c)
		fp := ssh.FingerprintSHA256(c.SignatureKey)
		wantLines(t, lines, "Signing CA: RSA "+fp+" (using rsa-sha2-512)")
	}

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SignUser(weak, Request{Key: userPub, KeyID: "u", Principals: []string{"alice"}, Validity: time.Hour, Serial: 1}, testNow); err == nil {
		t.Error("1024-bit RSA CA accepted")
	}
}

func TestSignRejects(t *testing.T) {
	_, pub := newKey(t)
	good := Request{Key: pub, KeyID: "alice@laptop", Principals: []string{"alice"}, Validity: time.Hour, Serial: 1}
	goodHost := Request{Key: pub, KeyID: "web1", Principals: []string{"web1.example.com"}, Validity: time.Hour, Serial: 1}
	tests := []struct {
		name    string
		host    bool
		edit    func(*Request)
		wantMsg string
	}{
		{"user nil principals", false, func(r *Request) { r.Principals = nil }, "no principals"},
		{"user empty principals", false, func(r *Request) { r.Principals = []string{} }, "no principals"},
		{"user empty principal", false, func(r *Request) { r.Principals = []string{"alice", ""} }, "empty"},
		{"user comma", false, func(r *Request) { r.Principals = []string{"alice,root"} }, `"alice,root" contains a comma`},
		{"user uppercase", false, func(r *Request) { r.Principals = []string{"Alice"} }, `"Alice" must be lowercase`},
		{"user too long", false, func(r *Request) { r.Principals = []string{strings.Repeat("a", 33)} }, "longer than 32"},
		{"user leading digit", false, func(r *Request) { r.Principals = []string{"1alice"} }, `"1alice"`},
		{"user wildcard", false, func(r *Request) { r.Principals = []string{"*"} }, `"*"`},
		{"user zero validity", false, func(r *Request) { r.Validity = 0 }, "not positive"},
		{"user negative validity", false, func(r *Request) { r.Validity = -time.Hour }, "not positive"},
		{"user empty key id", false, func(r *Request) { r.KeyID = "" }, "empty key id"},
		{"user key id newline", false, func(r *Request) { r.KeyID = "alice\nroot" }, "unprintable"},
		{"user nil key", false, func(r *Request) { r.Key = nil }, "no public key"},
		{"user serial zero", false, func(r *Request) { r.Serial = 0 }, "serial 0"},
		{"host nil principals", true, func(r *Request) { r.Principals = nil }, "no principals"},
		{"host comma", true, func(r *Request) { r.Principals = []string{"a.example,b.example"} }, "contains a comma"},
		{"host wildcard", true, func(r *Request) { r.Principals = []string{"*.example.com"} }, "wildcard"},
		{"host space", true, func(r *Request) { r.Principals = []string{"web 1"} }, "whitespace"},
		{"host uppercase", true, func(r *Request) { r.Principals = []string{"Web1.example.com"} }, "lowercase"},
		{"host zero validity", true, func(r *Request) { r.Validity = 0 }, "not positive"},
		{"host empty key id", true, func(r *Request) { r.KeyID = "" }, "empty key id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, _ := newKey(t)
			ca := countingSigner{key, new(atomic.Int32)}
			req, signFn, prefix := good, SignUser, "sshca: sign user "
			if tt.host {
				req, signFn, prefix = goodHost, SignHost, "sshca: sign host "
			}
			req.Principals = slices.Clone(req.Principals)
			tt.edit(&req)
			c, err := signFn(ca, req, testNow)
			if err == nil || c != nil {
				t.Fatalf("got cert %v, err %v; want an error", c, err)
			}
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q, want prefix %q and %q", err, prefix, tt.wantMsg)
			}
			if n := ca.n.Load(); n != 0 {
				t.Errorf("CA signed %d times", n)
			}
		})
	}
}

func TestSignDoesNotAliasPrincipals(t *testing.T) {
	ca, _ := newKey(t)
	_, pub := newKey(t)
	principals := []string{"alice"}
	c, err := SignUser(ca, Request{Key: pub, KeyID: "a", Principals: principals, Validity: time.Hour, Serial: 1}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	principals[0] = "root"
	if c.ValidPrincipals[0] != "alice" {
		t.Errorf("certificate principals changed with the request: %q", c.ValidPrincipals)
	}
}

func TestValidPrincipal(t *testing.T) {
	for _, p := range []string{"alice", "_svc", "deploy-bot", "a1_b-2", "a", strings.Repeat("a", 32)} {
		if err := ValidPrincipal(p); err != nil {
			t.Errorf("ValidPrincipal(%q) = %v", p, err)
		}
	}
	for _, tt := range []struct{ in, msg string }{
		{"", "empty"},
		{"alice,root", "comma"},
		{",", "comma"},
		{"Alice", "lowercase"},
		{strings.Repeat("a", 33), "longer"},
		{"-alice", `"-alice"`},
		{"9lives", `"9lives"`},
		{"al ice", `"al ice"`},
		{"alice.smith", `"alice.smith"`},
		{"élise", `"élise"`},
	} {
		err := ValidPrincipal(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ValidPrincipal(%q) = %v, want error containing %q", tt.in, err, tt.msg)
		}
	}
}

func TestValidHostname(t *testing.T) {
	for _, h := range []string{"web1", "web1.example.com", "a-b.c", "10.0.0.5", "fd00::5", "::1", "xn--bcher-kva.example"} {
		if err := ValidHostname(h); err != nil {
			t.Errorf("ValidHostname(%q) = %v", h, err)
		}
	}
	for _, tt := range []struct{ in, msg string }{
		{"", "empty"},
		{"a.example,b.example", "comma"},
		{"web 1", "whitespace"},
		{"*.example.com", "wildcard"},
		{"web?", "wildcard"},
		{"!web1", "negation"},
		{"Web1", "lowercase"},
		{"-web.example", `label "-web"`},
		{"web..example", `label ""`},
		{"web1.example.", `label ""`},
		{"web_1.example", `label "web_1"`},
		{strings.Repeat("a", 64) + ".example", "label"},
		{"10.0.0.256", "neither"},
		{"fe80::1%eth0", "zone"},
		{"FD00::5", "canonical"},
		{"[::1]:22", "label"},
	} {
		err := ValidHostname(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ValidHostname(%q) = %v, want error containing %q", tt.in, err, tt.msg)
		}
	}
}

// TestIsAccountName holds isAccountName to the pattern it replaced, over
// every string of up to three characters of a mixed alphabet and edges.
func TestIsAccountName(t *testing.T) {
	re := regexp.MustCompile(principalPattern)
	cases := []string{"", "a", "_", "-", "9", "a-", "a9", "A", "a\n", "é", strings.Repeat("a", 32), strings.Repeat("a", 33),
		"_" + strings.Repeat("-", 31), "_" + strings.Repeat("-", 32)}
	cases = append(cases, testenv.AllStrings("aZ9-_.,", 3)...)
	for _, s := range cases {
		if got, want := isAccountName(s), re.MatchString(s); got != want {
			t.Errorf("isAccountName(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}

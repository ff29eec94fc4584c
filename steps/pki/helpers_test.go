package pki

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the fixed clock used by the tests.
var testNow = time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)

const opensslPath = "/usr/bin/openssl"

// openssl runs openssl with args in dir and returns its combined output and
// exit error. The test fails if openssl is not installed.
func openssl(t testing.TB, dir string, args ...string) (string, error) {
	t.Helper()
	bin := opensslPath
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("openssl")
		if lerr != nil {
			t.Fatalf("openssl is required (install it; make test does): %v", err)
		}
		bin = p
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustOpenSSL runs openssl and fails the test on a non-zero exit.
func mustOpenSSL(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := openssl(t, dir, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// attime is the -attime argument that makes openssl verify at the test clock.
func attime() string { return fmt.Sprint(testNow.Add(time.Minute).Unix()) }

type cachedKey struct {
	once sync.Once
	key  crypto.Signer
	err  error
}

var keyCache sync.Map // "type/index" -> *cachedKey

// testKey returns the i-th key of type kt, generated once per test binary
// (RSA-4096 generation is slow).
func testKey(t testing.TB, kt KeyType, i int) crypto.Signer {
	t.Helper()
	v, _ := keyCache.LoadOrStore(fmt.Sprintf("%s/%d", kt, i), new(cachedKey))
	c := v.(*cachedKey)
	c.once.Do(func() { c.key, c.err = GenerateKey(kt) })
	if c.err != nil {
		t.Fatal(c.err)
	}
	return c.key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	s, err := RandomSerial(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRoot makes a root CA valid for a year from testNow with key i of kt.
func testRoot(t testing.TB, kt KeyType, i int, cn string) *CA {
	t.Helper()
	ca, err := NewRoot(Subject{CommonName: cn, Organization: "Example Org", Country: "DE"},
		testKey(t, kt, i), 365*24*time.Hour, testNow, serial(t))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func testServer(t testing.TB, ca *CA, kt KeyType, i int) *x509.Certificate {
	t.Helper()
	c, err := ca.IssueServer(testKey(t, kt, i).Public(), "web.example.internal",
		[]string{"web.example.internal", "web"}, []netip.Addr{netip.MustParseAddr("10.8.0.1"), netip.MustParseAddr("fd00::1")},
		90*24*time.Hour, testNow, serial(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testClient(t testing.TB, ca *CA, kt KeyType, i int, cn string) *x509.Certificate {
	t.Helper()
	c, err := ca.IssueClient(testKey(t, kt, i).Public(), cn, "staff", 90*24*time.Hour, testNow, serial(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// opensslHex formats n as openssl prints serial numbers: upper-case hex,
// an even number of digits.
func opensslHex(n *big.Int) string {
	s := fmt.Sprintf("%X", n)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// colonHex formats b as openssl prints key identifiers: AB:CD:...
func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

//go:build linux

// Package testenv holds what ztwizard's tests share when they run real
// components: the programs they need, programs run with a time limit,
// named network namespaces, daemons run in process groups of their own, a
// buffer for their output that is safe to read while they write, machines
// (network, mount and UTS namespaces with their own /etc, /var, /run,
// /root and /tmp) joined by a bridge, and a few fixtures (site variants,
// tree dumps, ICMP echo requests).
//
// It is imported only by _test.go files and by the test-helper packages
// (wgdevicetest, nfttest). It imports nothing of ztwizard, so that the
// internal tests of package steps may use it too.
//
// A helper that finds the machine lacking fails the test; it never skips
// it: these tests prove behaviour against the real thing. Every wait is
// bounded.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe for concurrent use: a child process writes
// its output into it while the test reads it. The zero value is empty and
// ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// sbinDirs are searched after PATH: sshd, nginx, ip and nft live there, and
// the PATH of a test run may lack them.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

// packages names the Debian package that installs each program the tests
// run (./scripts/deps.sh installs them all).
var packages = map[string]string{
	"ansible-inventory": "ansible-core",
	"ansible-playbook":  "ansible-core",
	"cp":                "coreutils",
	"initdb":            "postgresql",
	"ip":                "iproute2",
	"mariadbd":          "mariadb-server-core",
	"mount":             "mount",
	"nft":               "nftables",
	"nginx":             "nginx",
	"curl":              "curl",
	"openssl":           "openssl",
	"postgres":          "postgresql",
	"psql":              "postgresql-client",
	"ss":                "iproute2",
	"testssl":           "testssl.sh",
	"ssh":               "openssh-client",
	"ssh-keygen":        "openssh-client",
	"sshd":              "openssh-server",
	"unshare":           "util-linux",
	"wg":                "wireguard-tools",
	"wg-quick":          "wireguard-tools",
	"zbarimg":           "zbar-tools",
}

// Need fails t unless every tool is installed. A name is looked up on PATH,
// then in /usr/sbin, /usr/local/sbin and /sbin; an absolute path must be an
// executable file. The failure names every missing tool and the package
// that installs it.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := lookTool(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%v (%s)", err, install(tool)))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("this test runs the real programs: %s", strings.Join(missing, "; "))
	}
}

// Tool is the path of tool as Need finds it; it fails t as Need does.
func Tool(t testing.TB, tool string) string {
	t.Helper()
	Need(t, tool)
	p, _ := lookTool(tool)
	return p
}

// NeedRoot fails t unless it runs as root: it creates namespaces, changes
// firewalls or runs daemons as other users.
func NeedRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		t.Fatalf("this test needs root (euid %d): run it as root, as make test and CI do", euid)
	}
}

// lookTool finds tool as Need describes.
func lookTool(tool string) (string, error) {
	if filepath.IsAbs(tool) {
		if err := executable(tool); err != nil {
			return "", fmt.Errorf("%s is required: %w", tool, err)
		}
		return tool, nil
	}
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		if p := filepath.Join(dir, tool); executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is required: not on PATH nor in %s", tool, strings.Join(sbinDirs, ", "))
}

// executable returns an error unless path is a file someone may execute.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: not an executable file", path)
	}
	return nil
}

// install tells how to install tool: its package, and PostgreSQL's by the
// version in its path (/usr/lib/postgresql/VERSION/bin/...).
func install(tool string) string {
	pkg := packages[filepath.Base(tool)]
	if rest, ok := strings.CutPrefix(tool, "/usr/lib/postgresql/"); ok {
		if version, _, ok := strings.Cut(rest, "/"); ok {
			pkg = "postgresql-" + version
		}
	}
	if pkg == "" {
		return "./scripts/deps.sh installs what the tests need"
	}
	return "apt-get install " + pkg + ", or ./scripts/deps.sh"
}

// FreePort returns a loopback TCP port that nothing listened on a moment
// ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WriteFile writes data to dir/name, readable by its owner only, and
// returns the path; it fails t if it cannot.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

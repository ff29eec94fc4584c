// Package nfttest runs nftables tests against the real kernel, each in
// network namespaces of its own that are removed when the test ends.
package nfttest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
)

// Require fails the test unless it runs as root with nft and ip on PATH:
// these tests prove behaviour in the kernel, so they never skip.
func Require(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatalf("nftables tests need root (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("nftables tests need %s (apt-get install nftables iproute2): %v", tool, err)
		}
	}
}

// NS is a fresh network namespace with an empty ruleset.
type NS struct {
	Name string
	tb   testing.TB
	fd   *os.File
}

// NewNS makes a namespace named ztfw-<random> and removes it when the test
// ends, failed or not.
func NewNS(tb testing.TB) *NS {
	tb.Helper()
	Require(tb)
	var r [6]byte
	if _, err := rand.Read(r[:]); err != nil {
		tb.Fatal(err)
	}
	ns := &NS{Name: "ztfw-" + hex.EncodeToString(r[:]), tb: tb}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
	}
	tb.Cleanup(func() {
		if ns.fd != nil {
			ns.fd.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	f, err := os.Open(filepath.Join("/run/netns", ns.Name))
	if err != nil {
		tb.Fatalf("open namespace %s: %v", ns.Name, err)
	}
	ns.fd = f
	return ns
}

// Conn is a netlink connection to nftables inside the namespace.
func (ns *NS) Conn() *nftables.Conn {
	ns.tb.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.fd.Fd())))
	if err != nil {
		ns.tb.Fatalf("nftables in %s: %v", ns.Name, err)
	}
	return c
}

// Nft runs nft with args inside the namespace, stdin as its input, and
// returns its output; it fails the test when nft fails.
func (ns *NS) Nft(stdin string, args ...string) string {
	ns.tb.Helper()
	out, err := ns.TryNft(stdin, args...)
	if err != nil {
		ns.tb.Fatalf("nft %s in %s: %v", strings.Join(args, " "), ns.Name, err)
	}
	return out
}

// TryNft is Nft that returns nft's failure, with its message, as an error.
func (ns *NS) TryNft(stdin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &Error{Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// List is `nft list table inet NAME` inside the namespace.
func (ns *NS) List(family, name string) string {
	ns.tb.Helper()
	return ns.Nft("", "list", "table", family, name)
}

// Ruleset is `nft list ruleset` inside the namespace.
func (ns *NS) Ruleset() string {
	ns.tb.Helper()
	return ns.Nft("", "list", "ruleset")
}

// Netlink is what the kernel holds for the table, as `nft --debug=netlink
// list table` dumps it: every set's elements and every rule's expressions,
// then the listing. It is made comparable across namespaces: rule handles
// are dropped, each set's elements are sorted (a hash set dumps them in an
// order seeded per set), and element userdata is dropped (nft alone writes
// a hint there for a network that reaches the top of the address space).
func (ns *NS) Netlink(family, name string) string {
	ns.tb.Helper()
	lines := strings.Split(ns.Nft("", "--debug=netlink", "list", "table", family, name), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "\telement ") {
			l, _, _ = strings.Cut(l, "  userdata = ")
			lines[i] = l
			continue
		}
		f := strings.Fields(l)
		if len(f) >= 4 && strings.HasPrefix(l, family+" "+name+" ") && !strings.HasPrefix(f[2], "@") {
			for len(f) > 3 && strings.Trim(f[len(f)-1], "0123456789") == "" {
				f = f[:len(f)-1]
			}
			lines[i] = strings.Join(f, " ")
		}
	}
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && strings.HasPrefix(lines[j], "\telement ") {
			j++
		}
		slices.Sort(lines[i:j])
		i = j + 1
	}
	return strings.Join(lines, "\n")
}

// Error is a failed nft run.
type Error struct {
	Err    error
	Stderr string
}

func (e *Error) Error() string { return e.Err.Error() + ": " + strings.TrimSpace(e.Stderr) }

// Check runs `nft -c -f -` on script inside the namespace: nft parses and
// evaluates it and the kernel checks the batch, but nothing is committed.
func (ns *NS) Check(script string) error {
	_, err := ns.TryNft(script, "-c", "-f", "-")
	return err
}

// Package nfttest runs nftables tests against the real kernel, each in
// network namespaces of its own (made by package testenv) that are removed
// when the test ends.
package nfttest

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"

	"ztwizard/steps/testenv"
)

// Require fails the test unless it runs as root with nft and ip installed:
// these tests prove behaviour in the kernel, so they never skip.
func Require(tb testing.TB) {
	tb.Helper()
	testenv.NeedRoot(tb)
	testenv.Need(tb, "nft", "ip")
}

// NS is a fresh network namespace with an empty ruleset.
type NS struct {
	Name string
	tb   testing.TB
	fd   *os.File
}

// NewNS makes a namespace named ztfw-<random> (see testenv.NewNetns) and
// removes it when the test ends, failed or not.
func NewNS(tb testing.TB) *NS {
	tb.Helper()
	Require(tb)
	ns := &NS{Name: testenv.NewNetns(tb, "ztfw-"), tb: tb}
	f, err := os.Open(testenv.NetnsPath(ns.Name))
	if err != nil {
		tb.Fatalf("open namespace %s: %v", ns.Name, err)
	}
	ns.fd = f
	tb.Cleanup(func() { f.Close() }) // before the namespace goes
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
	out, _, err := testenv.RunCmd(context.Background(), testenv.CmdTimeout, cmd)
	return out, err
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

// Check runs `nft -c -f -` on script inside the namespace: nft parses and
// evaluates it and the kernel checks the batch, but nothing is committed.
func (ns *NS) Check(script string) error {
	_, err := ns.TryNft(script, "-c", "-f", "-")
	return err
}

package host

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"

	"ztwizard/steps"
	"ztwizard/steps/nft"
	"ztwizard/steps/testenv"
)

// hubFirewall is n0's firewall in a hub of n peers.
func hubFirewall(tb testing.TB, n int) *nft.Table {
	tb.Helper()
	site, err := steps.Parse(testenv.HubSite(n, "192.168.10.0/24", "2001:db8:10::/48"), "hub.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	addrs, err := site.Addresses(nil)
	if err != nil {
		tb.Fatal(err)
	}
	tbl, err := steps.FirewallFor(site, "n0", addrs, steps.WireGuardName)
	if err != nil {
		tb.Fatal(err)
	}
	if !strings.Contains(tbl.Text(), fmt.Sprintf("10.100.%d.%d . 3306", (n+1)/256, (n+1)%256)) {
		tb.Fatalf("the firewall lacks the last client:\n%.2000s", tbl.Text())
	}
	return tbl
}

// BenchmarkFirewall1000Peers replaces the inet ztwizard table of a node
// whose database admits 1,000 peers, in a fresh network namespace: as the
// applier does, in one netlink batch, and as `nft -f` does from the same
// ruleset text (the program started each time, as a script would).
func BenchmarkFirewall1000Peers(b *testing.B) {
	tbl := hubFirewall(b, 1000)
	script := []byte(tbl.Script())
	b.Run("netlink", func(b *testing.B) {
		enterNetns(b)
		c, err := nftables.New()
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := tbl.Apply(c); err != nil {
				b.Fatal(err)
			}
		}
		checkTable(b, tbl)
	})
	b.Run("nft -f", func(b *testing.B) {
		enterNetns(b)
		for b.Loop() {
			cmd := exec.Command("nft", "-f", "-")
			cmd.Stdin = bytes.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("nft -f: %v: %s", err, out)
			}
		}
		checkTable(b, tbl)
	})
}

// checkTable fails unless the namespace holds tbl as nft lists it.
func checkTable(b *testing.B, tbl *nft.Table) {
	b.Helper()
	text, ok, err := kernelFirewall{run: execRunner{}}.Current(context.Background())
	if err != nil || !ok || text != tbl.Text() {
		b.Fatalf("the kernel's table differs from the model (exists %v, %v)", ok, err)
	}
}

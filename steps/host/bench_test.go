package host

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

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
// ruleset text (the program started each time, as a script would). Each
// reports cpu-ms/op beside ns/op.
func BenchmarkFirewall1000Peers(b *testing.B) {
	tbl := hubFirewall(b, 1000)
	script := []byte(tbl.Script())
	b.Run("netlink", func(b *testing.B) {
		enterNetns(b)
		c, err := nftables.New()
		if err != nil {
			b.Fatal(err)
		}
		cpu := startCPU(b)
		for b.Loop() {
			if err := tbl.Apply(c); err != nil {
				b.Fatal(err)
			}
		}
		cpu.report(b)
		checkTable(b, tbl)
	})
	b.Run("nft -f", func(b *testing.B) {
		enterNetns(b)
		cpu := startCPU(b)
		for b.Loop() {
			cmd := exec.Command("nft", "-f", "-")
			cmd.Stdin = bytes.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("nft -f: %v: %s", err, out)
			}
		}
		cpu.report(b)
		checkTable(b, tbl)
	})
}

// cpuClock is the CPU time (user and system, kernel work in our system
// calls included) of this process and of the children it has waited for.
type cpuClock struct{ self, children time.Duration }

func cpuNow(b *testing.B) cpuClock {
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		b.Fatal(err)
	}
	t := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return cpuClock{t(self), t(children)}
}

func startCPU(b *testing.B) cpuClock { return cpuNow(b) }

// report adds cpu-ms/op: the CPU time spent since c, this process's and
// its children's, per iteration. Unlike ns/op it does not count waiting
// for a CPU on a busy machine.
func (c cpuClock) report(b *testing.B) {
	now := cpuNow(b)
	spent := now.self - c.self + now.children - c.children
	b.ReportMetric(float64(spent.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// checkTable fails unless the namespace holds tbl as nft lists it.
func checkTable(b *testing.B, tbl *nft.Table) {
	b.Helper()
	text, ok, err := kernelFirewall{run: execRunner{}}.Current(context.Background())
	if err != nil || !ok || text != tbl.Text() {
		b.Fatalf("the kernel's table differs from the model (exists %v, %v)", ok, err)
	}
}

package steps_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice/wgdevicetest"
)

// BenchmarkWireGuard1000Peers configures a userspace WireGuard device (in a
// namespace of its own) with the interface of node n0 of a hub of 1,000
// peers: with wgctrl, the configuration apply sends, and with `wg setconf`
// of the same key and peers (the node's standalone wg-quick file, stripped),
// the program started each time. Each run replaces every peer; the device
// does the same work either way. It reports the median of each side and
// their ratio. The check between runs (wg show) is timed in ns/op only.
func BenchmarkWireGuard1000Peers(b *testing.B) {
	wgdevicetest.RequireTools(b, "wg", "wg-quick")
	site, err := steps.Parse(testenv.HubSite(1000, "192.168.10.0/24"), "hub.yaml")
	if err != nil {
		b.Fatal(err)
	}
	addrs, err := site.Addresses(nil)
	if err != nil {
		b.Fatal(err)
	}
	sec := &steps.Secrets{WireGuardPubs: map[string]wgtypes.Key{}, Addresses: addrs}
	for _, n := range site.Nodes {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			b.Fatal(err)
		}
		sec.WireGuardPubs[n.Name] = k.PublicKey()
		if n.Name == "n0" {
			sec.WireGuardKey = &k
		}
	}
	iface, _, err := steps.WireGuardFor(site, "n0", sec)
	if err != nil {
		b.Fatal(err)
	}
	text, err := steps.WGQuickStandalone(site, "n0", sec)
	if err != nil {
		b.Fatal(err)
	}
	dev := wgdevicetest.Start(b, wgdevicetest.Options{Isolated: true})
	conf := filepath.Join(b.TempDir(), dev.Name+".conf")
	if err := os.WriteFile(conf, text, 0o600); err != nil {
		b.Fatal(err)
	}
	stripped := testenv.MustRun(b, "wg-quick", "strip", conf)
	if err := os.WriteFile(conf, []byte(stripped), 0o600); err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B) {
		if d := wgdevicetest.Show(b, dev.Name); len(d.Peers) != 1000 {
			b.Fatalf("the device has %d peers, want 1000", len(d.Peers))
		}
	}
	c, err := wgctrl.New()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// The two run in turn, each timed on its own, so that a change in
	// the machine's load touches both alike.
	var ctl, setconf []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := c.ConfigureDevice(dev.Name, iface.Config); err != nil {
			b.Fatal(err)
		}
		ctl = append(ctl, time.Since(start))
		check(b)
		start = time.Now()
		if out, err := exec.Command("wg", "setconf", dev.Name, conf).CombinedOutput(); err != nil {
			b.Fatalf("wg setconf: %v: %s", err, out)
		}
		setconf = append(setconf, time.Since(start))
		check(b)
	}
	mc, ms := median(ctl), median(setconf)
	b.ReportMetric(float64(mc.Microseconds())/1000, "wgctrl-ms")
	b.ReportMetric(float64(ms.Microseconds())/1000, "setconf-ms")
	b.ReportMetric(float64(ms)/float64(mc), "setconf/wgctrl")
}

// median is the middle of d (the mean of the two middle ones for an even
// count).
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

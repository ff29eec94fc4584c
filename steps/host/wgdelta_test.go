package host

import (
	"net"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice/wgdevicetest"
)

func TestWGHelperProcess(t *testing.T) { wgdevicetest.HelperMain() }

// recordingWG is a real WireGuard client that keeps the configurations it
// sends.
type recordingWG struct {
	*wgctrl.Client
	sent []wgtypes.Config
}

func (r *recordingWG) ConfigureDevice(name string, cfg wgtypes.Config) error {
	r.sent = append(r.sent, cfg)
	return r.Client.ConfigureDevice(name, cfg)
}

func wgKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hostNet(ip string) []net.IPNet {
	return []net.IPNet{{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(32, 32)}}
}

// TestWGDeltaOnRealDevice: once a device exists, an apply sends only the
// peers that change (one updated, one removed, one added, with a preshared
// key and keepalive cleared on the updated one), not the unchanged ones,
// and a real userspace device ends up exactly as the plan wants; with
// nothing changed nothing is sent. A device that does not exist yet gets
// the whole configuration.
func TestWGDeltaOnRealDevice(t *testing.T) {
	wgdevicetest.RequireTools(t, "wg")
	// The device in a namespace of its own, and this test's thread there
	// too: the device's link and addresses, and wg show.
	ns := testenv.NewNetns(t, "ztwg-")
	f, err := os.Open(testenv.NetnsPath(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runtime.LockOSThread() // never unlocked: the thread ends with the test
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	// Back home before the namespace is removed (cleanups run last
	// first): a thread inside would keep it.
	t.Cleanup(func() {
		_ = unix.Setns(int(home.Fd()), unix.CLONE_NEWNET)
		home.Close()
	})
	dev := wgdevicetest.Start(t, wgdevicetest.Options{NetNS: ns})
	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wg := &recordingWG{Client: c}

	priv := wgKey(t)
	port := 51820
	ka := 25 * time.Second
	psk := wgKey(t)
	var pubs []wgtypes.Key
	for range 4 {
		pubs = append(pubs, wgKey(t).PublicKey())
	}
	peer := func(i int, ip string) wgtypes.PeerConfig {
		return wgtypes.PeerConfig{PublicKey: pubs[i], ReplaceAllowedIPs: true, AllowedIPs: hostNet(ip)}
	}
	before := steps.Interface{Name: dev.Name, Config: wgtypes.Config{PrivateKey: &priv, ListenPort: &port, ReplacePeers: true}}
	kept, changed, removed := peer(0, "10.64.0.2"), peer(1, "10.64.0.3"), peer(2, "10.64.0.4")
	changed.PresharedKey, changed.PersistentKeepaliveInterval = &psk, &ka
	changed.Endpoint = &net.UDPAddr{IP: net.ParseIP("192.0.2.1").To4(), Port: 51820}
	before.Config.Peers = []wgtypes.PeerConfig{kept, changed, removed}

	now, err := wgState(wg, dev.Name)
	if err != nil || !now.Existed || len(now.Peers) != 0 {
		t.Fatalf("the fresh device: %+v, %v", now, err)
	}
	// A first configuration (as of a device just started: empty) is
	// sent whole; what a device that did not exist gets too.
	if err := configure(wg, before, nil, &WGSnapshot{Name: dev.Name}); err != nil {
		t.Fatal(err)
	}
	if got := wg.sent[0]; !got.ReplacePeers || len(got.Peers) != 3 {
		t.Fatalf("first configuration: ReplacePeers %v, %d peers; want the whole of it", got.ReplacePeers, len(got.Peers))
	}

	after := before
	after.Config.Peers = []wgtypes.PeerConfig{kept, peer(1, "10.64.0.13"), peer(3, "10.64.0.5")}
	if now, err = wgState(wg, dev.Name); err != nil {
		t.Fatal(err)
	}
	if now.same(desired(after, nil)) {
		t.Fatal("the device already matches the new plan: the test changes nothing")
	}
	if set, removed := peerChanges(now, desired(after, nil)); set != 2 || removed != 1 {
		t.Fatalf("peerChanges: %d to add or change, %d to remove; want 2 and 1", set, removed)
	}
	if err := configure(wg, after, nil, now); err != nil {
		t.Fatal(err)
	}
	sent := wg.sent[1]
	var got []string
	for _, p := range sent.Peers {
		what := "set"
		if p.Remove {
			what = "remove"
		}
		got = append(got, what+" "+p.PublicKey.String())
	}
	want := []string{"remove " + pubs[2].String(), "set " + pubs[1].String(), "set " + pubs[3].String()}
	if sent.ReplacePeers || sent.PrivateKey != nil || sent.ListenPort != nil || !slices.Equal(got, want) {
		t.Fatalf("sent ReplacePeers %v, key %v, port %v, peers %q; want only %q", sent.ReplacePeers, sent.PrivateKey != nil, sent.ListenPort != nil, got, want)
	}
	if now, err = wgState(wg, dev.Name); err != nil {
		t.Fatal(err)
	}
	if !now.same(desired(after, nil)) {
		t.Fatalf("the device is not as the plan wants:\n%+v\nwant\n%+v", now, desired(after, nil))
	}
	d := wgdevicetest.Show(t, dev.Name)
	for _, p := range d.Peers {
		if p.PublicKey == pubs[1].String() && (p.PresharedKey != "(none)" || p.Keepalive != "off" || p.AllowedIPs != "10.64.0.13/32") {
			t.Fatalf("the changed peer kept old settings: %+v", p)
		}
	}

	// Nothing changed: nothing to send but an empty configuration.
	if err := configure(wg, after, nil, now); err != nil {
		t.Fatal(err)
	}
	if last := wg.sent[2]; len(last.Peers) != 0 || last.PrivateKey != nil || last.ListenPort != nil || last.ReplacePeers {
		t.Fatalf("an unchanged interface was sent %+v", last)
	}
}

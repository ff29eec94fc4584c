//go:build linux

package wgdevice_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice"
	"ztwizard/steps/wgdevice/wgdevicetest"
)

func TestWGHelperProcess(t *testing.T) { wgdevicetest.HelperMain() }

// runReady runs a device called name in this process until the returned
// cancel is called (or the test ends) and waits until it is ready; Run's
// result comes on the channel. The link is removed at the end if Run left
// it.
func runReady(t *testing.T, name string, logf, verbosef func(string, ...any)) (context.CancelFunc, <-chan error) {
	t.Helper()
	t.Cleanup(func() {
		if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, "ip", "link", "show", "dev", name); err == nil {
			testenv.RunTimeout(context.Background(), testenv.CmdTimeout, "ip", "link", "del", "dev", name)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the link's removal: cleanups run last first
	errc := make(chan error, 1)
	go func() { errc <- wgdevice.Run(ctx, name, logf, verbosef) }()
	if err := wgdevice.Ready(name, 10*time.Second); err != nil {
		cancel()
		t.Fatalf("Ready: %v (Run: %v)", err, <-errc)
	}
	return cancel, errc
}

// TestWgdeviceRunInProcess runs a device in the test's own process and
// namespace: the link and socket appear, wg(8) and wgctrl configure it, and
// cancelling the context removes both.
func TestWgdeviceRunInProcess(t *testing.T) {
	wgdevicetest.RequireTools(t, "wg", "ip")
	name := wgdevicetest.NewName(t)
	cancel, errc := runReady(t, name, t.Logf, nil)
	if link := testenv.MustRun(t, "ip", "link", "show", "dev", name); !strings.Contains(link, ",UP") {
		t.Errorf("link %s is not up:\n%s", name, link)
	}

	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := 0
	if err := c.ConfigureDevice(name, wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
		t.Fatalf("ConfigureDevice: %v", err)
	}
	dump := wgdevicetest.Show(t, name)
	if dump.PublicKey != key.PublicKey().String() {
		t.Errorf("wg show: public key %s, want %s", dump.PublicKey, key.PublicKey())
	}
	if dump.ListenPort == "0" {
		t.Errorf("wg show: listen port 0: the device is not up")
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if _, err := os.Stat(wgdevice.SocketPath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s after Run: %v, want it removed", wgdevice.SocketPath(name), err)
	}
	if _, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, "ip", "link", "show", "dev", name); err == nil {
		t.Errorf("link %s still exists after Run", name)
	}
}

// TestWgdeviceLogsPeersOnlyWhenVerbose configures a device with peers: the
// device's own log gets the line that it is up and no line per peer (7,000
// lines for a first configuration of 1,000 peers), the verbose log gets
// every peer's.
func TestWgdeviceLogsPeersOnlyWhenVerbose(t *testing.T) {
	wgdevicetest.RequireTools(t, "ip")
	name := wgdevicetest.NewName(t)
	var mu sync.Mutex
	var logged, verbose []string
	collect := func(to *[]string) func(string, ...any) {
		return func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			*to = append(*to, fmt.Sprintf(format, args...))
		}
	}
	cancel, errc := runReady(t, name, collect(&logged), collect(&verbose))
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := wgtypes.Config{PrivateKey: &key, ReplacePeers: true}
	for range 3 {
		peer, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: peer.PublicKey()})
	}
	c, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ConfigureDevice(name, cfg); err != nil {
		t.Fatalf("ConfigureDevice: %v", err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(logged, "\n")
	if !strings.Contains(all, "device "+name+" up") {
		t.Errorf("log has no line that the device is up:\n%s", all)
	}
	if strings.Contains(all, "peer(") {
		t.Errorf("log has per-peer lines without verbose:\n%s", all)
	}
	created := 0
	for _, l := range verbose {
		if strings.Contains(l, "peer(") && strings.Contains(l, "Created") {
			created++
		}
	}
	if created != len(cfg.Peers) {
		t.Errorf("verbose log says %d peers were created, want %d:\n%s", created, len(cfg.Peers), strings.Join(verbose, "\n"))
	}
}

// TestWgdeviceChildProcess runs devices in child processes, in this
// namespace and in a fresh one; wg(8) reaches both through their sockets.
// Stopping them is checked by the helper's cleanup.
func TestWgdeviceChildProcess(t *testing.T) {
	wgdevicetest.RequireTools(t, "wg", "ip")
	for _, tc := range []struct {
		name string
		opts wgdevicetest.Options
	}{
		{"host namespace", wgdevicetest.Options{}},
		{"isolated namespace", wgdevicetest.Options{Isolated: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := wgdevicetest.Start(t, tc.opts)
			_, err := testenv.RunTimeout(context.Background(), testenv.CmdTimeout, "ip", "link", "show", "dev", d.Name)
			if visible := err == nil; visible == tc.opts.Isolated {
				t.Errorf("link %s visible in this namespace: %v, want %v", d.Name, visible, !tc.opts.Isolated)
			}
			dir := t.TempDir()
			key, err := wgtypes.GeneratePrivateKey()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir+"/key", []byte(key.String()+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			testenv.MustRun(t, "wg", "set", d.Name, "private-key", dir+"/key")
			if got := wgdevicetest.Show(t, d.Name).PrivateKey; got != key.String() {
				t.Errorf("wg show: private key %s, want %s", got, key)
			}
			if err := d.Stop(); err != nil {
				t.Fatalf("Stop: %v\n%s", err, d.Output())
			}
			if _, err := os.Stat(wgdevice.SocketPath(d.Name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket after Stop: %v, want it removed", err)
			}
		})
	}
}

func TestWgdeviceRunErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		device string
		want   string
	}{
		{"cancelled context", cancelled, "zttcancel", "wgdevice: zttcancel: context canceled"},
		{"name too long", context.Background(), "ztt-name-far-too-long", "wgdevice: ztt-name-far-too-long: create TUN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wgdevice.Run(tc.ctx, tc.device, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(wgdevice.SocketPath(tc.device)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket left behind: %v", err)
			}
		})
	}
}

func TestWgdeviceReadyTimesOut(t *testing.T) {
	start := time.Now()
	err := wgdevice.Ready("zttabsent", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "zttabsent") {
		t.Fatalf("Ready on no device: %v, want an error naming it", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ready took %s for a 200ms timeout", d)
	}
}

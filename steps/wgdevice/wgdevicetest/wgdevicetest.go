//go:build linux

// Package wgdevicetest runs userspace WireGuard devices (wgdevice.Run) in
// child processes for tests, and holds what such tests share besides
// package testenv: the real tools and the TUN device they need, unique
// device names and `wg show dump` parsing.
//
// A test package that starts devices declares
//
//	func TestWGHelperProcess(t *testing.T) { wgdevicetest.HelperMain() }
//
// Start then re-executes the test binary with only that test selected and
// an environment variable that makes HelperMain run the device.
package wgdevicetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps/testenv"
	"ztwizard/steps/wgdevice"
)

// helperEnv names the device a helper process runs; set only in helpers.
const helperEnv = "ZTWIZARD_WGDEVICE_HELPER"

// readyTimeout bounds the wait for a device to answer on its socket.
const readyTimeout = 15 * time.Second

// HelperMain runs a device and exits when the test binary was started by
// Start; otherwise it returns at once. The device stops on SIGTERM.
func HelperMain() {
	name := os.Getenv(helperEnv)
	if name == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	if err := wgdevice.Run(ctx, name, logf, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// RequireTools fails t unless every named program is installed (see
// testenv.Need) and the TUN device exists: these tests prove behaviour
// against the real tools, so a machine without them is a failure, not a
// skip.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	testenv.Need(t, tools...)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("/dev/net/tun is required: %v", err)
	}
}

// NewName returns a link name no device uses yet: "ztt" and eight random
// hex digits.
func NewName(t testing.TB) string {
	t.Helper()
	for range 100 {
		name := testenv.Unique(t, "ztt")
		if _, err := os.Stat(wgdevice.SocketPath(name)); errors.Is(err, os.ErrNotExist) {
			return name
		}
	}
	t.Fatal("no free device name after 100 tries")
	return ""
}

// Options says where a device runs. The zero value runs it in the test's
// own network namespace.
type Options struct {
	// Isolated runs the device in a fresh network namespace of its own,
	// holding only a loopback link that is down: its packets go nowhere
	// and its listen port collides with no other device's.
	Isolated bool
	// NetNS is the name of a network namespace (see testenv.NewNetns)
	// the device runs in.
	NetNS string
}

// Device is a userspace WireGuard device running in a child process.
type Device struct {
	Name string

	proc *testenv.Proc
}

// Start runs a new device in a child process (see testenv.Start), waits
// until it answers on its UAPI socket, and stops it when t ends: it then
// fails t unless the device exited cleanly and removed its socket, and
// deletes the link if it remains.
func Start(t testing.TB, opts Options) *Device {
	t.Helper()
	d := &Device{Name: NewName(t)}
	// Registered before the process starts, so that it runs once the
	// process has been stopped.
	t.Cleanup(func() { d.cleanup(t) })
	cmd := exec.Command(os.Args[0], "-test.run=^TestWGHelperProcess$", "-test.count=1")
	// A race-enabled binary waits a second at exit unless told not to.
	cmd.Env = append(os.Environ(), helperEnv+"="+d.Name,
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	if opts.Isolated {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	}
	d.proc = testenv.Start(t, cmd, testenv.ProcOptions{Name: "device " + d.Name, Netns: opts.NetNS})
	if err := d.proc.WaitReady(readyTimeout, func() error { return wgdevice.Ready(d.Name, 50*time.Millisecond) }); err != nil {
		t.Fatal(err)
	}
	return d
}

// Stop ends the device as testenv.Proc.Stop does: SIGTERM, then SIGKILL if
// it has not exited in time. It returns nil for a clean exit. It may be
// called more than once.
func (d *Device) Stop() error { return d.proc.Stop() }

// Output is what the device process has logged so far.
func (d *Device) Output() string { return d.proc.Output() }

// cleanup fails t if the stopped device left its socket, and deletes its
// link if it remains.
func (d *Device) cleanup(t testing.TB) {
	t.Helper()
	if d.proc == nil {
		return // it never started
	}
	if _, err := os.Stat(wgdevice.SocketPath(d.Name)); err == nil {
		t.Errorf("device %s: socket %s left behind", d.Name, wgdevice.SocketPath(d.Name))
		os.Remove(wgdevice.SocketPath(d.Name))
	}
	ctx := context.Background()
	if _, err := testenv.RunTimeout(ctx, testenv.CmdTimeout, "ip", "link", "show", "dev", d.Name); err == nil {
		if _, err := testenv.RunTimeout(ctx, testenv.CmdTimeout, "ip", "link", "del", "dev", d.Name); err != nil {
			t.Error(err)
		}
	}
}

// Peer is one peer line of `wg show NAME dump`.
type Peer struct {
	PublicKey    string
	PresharedKey string // "(none)" when unset
	Endpoint     string // "(none)" when unset
	AllowedIPs   string // comma-separated; "(none)" when empty
	Handshake    int64  // latest handshake, Unix seconds; 0 for never
	Keepalive    string // seconds, or "off"
}

// Dump is `wg show NAME dump`, parsed.
type Dump struct {
	PrivateKey string // "(none)" when unset
	PublicKey  string // "(none)" when unset
	ListenPort string
	Peers      []Peer // in the order wg printed them
}

// Show runs `wg show NAME dump` and parses it.
func Show(t testing.TB, name string) Dump {
	t.Helper()
	d, err := ParseDump(testenv.MustRun(t, "wg", "show", name, "dump"))
	if err != nil {
		t.Fatalf("wg show %s dump: %v", name, err)
	}
	return d
}

// ParseDump parses the output of `wg show NAME dump` for one interface.
func ParseDump(text string) (Dump, error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	head := strings.Split(lines[0], "\t")
	if len(head) != 4 {
		return Dump{}, fmt.Errorf("interface line %q: want 4 fields, got %d", lines[0], len(head))
	}
	d := Dump{PrivateKey: head[0], PublicKey: head[1], ListenPort: head[2]}
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 8 {
			return Dump{}, fmt.Errorf("peer line %q: want 8 fields, got %d", line, len(f))
		}
		hs, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			return Dump{}, fmt.Errorf("peer line %q: latest handshake: %w", line, err)
		}
		d.Peers = append(d.Peers, Peer{
			PublicKey:    f[0],
			PresharedKey: f[1],
			Endpoint:     f[2],
			AllowedIPs:   f[3],
			Handshake:    hs,
			Keepalive:    f[7],
		})
	}
	return d, nil
}

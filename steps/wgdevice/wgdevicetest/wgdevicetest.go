//go:build linux

// Package wgdevicetest runs userspace WireGuard devices (wgdevice.Run) in
// child processes for tests, and holds the helpers such tests share: the
// real tools they need, unique device names, network namespaces and
// `wg show dump` parsing.
//
// A test package that starts devices declares
//
//	func TestWGHelperProcess(t *testing.T) { wgdevicetest.HelperMain() }
//
// Start then re-executes the test binary with only that test selected and
// an environment variable that makes HelperMain run the device.
package wgdevicetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ztwizard/steps/wgdevice"
)

// helperEnv names the device a helper process runs; set only in helpers.
const helperEnv = "ZTWIZARD_WGDEVICE_HELPER"

// Timeouts that bound every wait.
const (
	readyTimeout = 15 * time.Second
	stopTimeout  = 5 * time.Second
	cmdTimeout   = 30 * time.Second
)

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
	if err := wgdevice.Run(ctx, name, logf); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// RequireTools fails t unless every named program is on PATH and the TUN
// device exists: these tests prove behaviour against the real tools, so a
// machine without them is a failure, not a skip.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (install wireguard-tools and iproute2): %v", tool, err)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("/dev/net/tun is required: %v", err)
	}
}

// NewName returns a link name no device uses yet: "ztt" and five random
// hex digits.
func NewName(t testing.TB) string {
	t.Helper()
	for range 100 {
		b := make([]byte, 3)
		if _, err := rand.Read(b); err != nil {
			t.Fatalf("random name: %v", err)
		}
		name := "ztt" + hex.EncodeToString(b)[:5]
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
	// NetNS is the path of a network namespace (for example
	// /var/run/netns/NAME) the device runs in.
	NetNS string
}

// Device is a userspace WireGuard device running in a child process.
type Device struct {
	Name string

	cmd      *exec.Cmd
	out      *syncBuffer
	done     chan struct{} // closed when the process has exited
	waitErr  error         // valid once done is closed
	stopOnce sync.Once
	stopErr  error
}

// Start runs a new device in a child process, waits until it answers on
// its UAPI socket, and stops it when t ends: it then fails t unless the
// device exited cleanly and removed its socket, and deletes the link if it
// remains.
func Start(t testing.TB, opts Options) *Device {
	t.Helper()
	name := NewName(t)
	d := &Device{Name: name, out: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(os.Args[0], "-test.run=^TestWGHelperProcess$", "-test.count=1")
	// A race-enabled binary waits a second at exit unless told not to.
	d.cmd.Env = append(os.Environ(), helperEnv+"="+name,
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	d.cmd.Stdout = d.out
	d.cmd.Stderr = d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if opts.Isolated {
		d.cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}

	// The child is started from a thread of its own that stays locked: it
	// may enter the namespace, and Pdeathsig follows the thread that
	// started the child, so the thread lives until the child is gone.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if opts.NetNS != "" {
			if err := enterNetns(opts.NetNS); err != nil {
				started <- err
				close(d.done)
				return
			}
		}
		if err := d.cmd.Start(); err != nil {
			started <- fmt.Errorf("start helper process: %w", err)
			close(d.done)
			return
		}
		started <- nil
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("device %s: %v", name, err)
	}
	t.Cleanup(func() { d.cleanup(t) })

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-d.done:
			t.Fatalf("device %s: helper exited before it was ready: %v\n%s", name, d.waitErr, d.Output())
		default:
		}
		err := wgdevice.Ready(name, 50*time.Millisecond)
		if err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s: %v\n%s", name, err, d.Output())
		}
	}
}

// enterNetns moves the calling thread into the network namespace at path.
func enterNetns(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	return nil
}

// Stop ends the device: SIGTERM, then SIGKILL if it has not exited within
// a few seconds. It returns the process's error, nil for a clean exit. It
// may be called more than once.
func (d *Device) Stop() error {
	d.stopOnce.Do(func() {
		select {
		case <-d.done:
		default:
			if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				d.stopErr = fmt.Errorf("signal: %w", err)
			}
			select {
			case <-d.done:
			case <-time.After(stopTimeout):
				d.cmd.Process.Kill()
				<-d.done
				d.stopErr = fmt.Errorf("did not stop within %s of SIGTERM; killed", stopTimeout)
				return
			}
		}
		if d.stopErr == nil && d.waitErr != nil {
			d.stopErr = fmt.Errorf("exited: %w", d.waitErr)
		}
	})
	return d.stopErr
}

// Output is what the device process has logged so far.
func (d *Device) Output() string { return d.out.String() }

func (d *Device) cleanup(t testing.TB) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Errorf("device %s: %v\n%s", d.Name, err, tail(d.Output(), 4000))
	}
	if _, err := os.Stat(wgdevice.SocketPath(d.Name)); err == nil {
		t.Errorf("device %s: socket %s left behind", d.Name, wgdevice.SocketPath(d.Name))
		os.Remove(wgdevice.SocketPath(d.Name))
	}
	if exec.Command("ip", "link", "show", "dev", d.Name).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", "dev", d.Name).CombinedOutput(); err != nil {
			t.Errorf("ip link del %s: %v: %s", d.Name, err, out)
		}
	}
	if t.Failed() {
		t.Logf("device %s log:\n%s", d.Name, tail(d.Output(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Cmd runs a program, bounded in time, and returns its standard output;
// it fails t with the program's output if it fails.
func Cmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := CmdErr(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CmdErr runs a program, bounded in time, and returns its standard output,
// or an error that holds its standard error.
func CmdErr(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// NewNetns creates a named network namespace for t and deletes it when t
// ends. It returns the name; its path is /var/run/netns/NAME.
func NewNetns(t testing.TB) string {
	t.Helper()
	name := "ztn" + NewName(t)[3:]
	Cmd(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if _, err := CmdErr("ip", "netns", "del", name); err != nil {
			t.Errorf("%v", err)
		}
	})
	return name
}

// NetnsPath is where ip-netns(8) keeps the namespace called name.
func NetnsPath(name string) string { return "/var/run/netns/" + name }

// InNetns runs fn on a thread that entered the network namespace at path:
// sockets fn opens belong to that namespace, wherever they are used later.
// The thread is discarded afterwards.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := enterNetns(path); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
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
	d, err := ParseDump(Cmd(t, "wg", "show", name, "dump"))
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

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

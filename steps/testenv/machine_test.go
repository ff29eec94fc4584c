//go:build linux

package testenv

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMachine makes two machines on a bridge and checks that each has its
// own /etc, /var, /run, /root and /tmp and host name, that they reach each
// other over the bridge only, that a daemon started in one runs there, and
// that everything (processes, namespaces, folders) is gone when the test
// ends, a process left behind by a daemon included.
func TestMachine(t *testing.T) {
	NeedRoot(t)
	Need(t, "sleep")
	dir := t.TempDir()
	f := &fakeTB{}
	var a, b *Machine
	var leftover int
	f.run(func(tb testing.TB) {
		br := NewBridge(tb)
		a = NewMachine(tb, "alpha", dir, MachineOptions{Setup: func(m *Machine) {
			WriteFile(tb, m.Path("/etc"), "zt-setup", []byte("alpha\n"))
		}})
		b = NewMachine(tb, "beta", dir, MachineOptions{Own: []string{"/root", "/run"}})
		br.Attach(tb, a.Netns, []string{"10.88.1.1/24"}, nil)
		br.Attach(tb, b.Netns, []string{"10.88.1.2/24"}, nil)

		if got := strings.TrimSpace(a.Must(tb, "hostname")); got != "alpha" {
			tb.Errorf("host name %q, want alpha", got)
		}
		if got := a.Must(tb, "cat", "/etc/zt-setup"); got != "alpha\n" {
			tb.Errorf("the file Setup wrote, seen inside: %q", got)
		}
		for _, p := range []string{"/etc/zt-inside", "/var/lib/zt-inside", "/run/zt-inside", "/root/zt-inside", "/tmp/zt-inside"} {
			a.Must(tb, "touch", p)
			if _, err := os.Stat(filepath.Join(a.Root, p)); err != nil {
				tb.Errorf("%s written inside alpha is not under its root: %v", p, err)
			}
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				tb.Errorf("%s written inside alpha is on this machine: %v", p, err)
			}
			if r := b.Run(tb, CmdTimeout, nil, "test", "-e", p); r.Code == 0 {
				tb.Errorf("%s written inside alpha is seen by beta", p)
			}
		}
		if b.Path("/etc/x") != "/etc/x" || b.Path("/root/x") != filepath.Join(b.Root, "root/x") {
			tb.Errorf("beta's paths: %s %s", b.Path("/etc/x"), b.Path("/root/x"))
		}
		var ln net.Listener
		if err := InNetns(b.Netns, func() (err error) {
			ln, err = net.Listen("tcp", "10.88.1.2:0")
			return err
		}); err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		if err := InNetns(a.Netns, func() error {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			tb.Errorf("alpha cannot reach beta over the bridge: %v", err)
		}
		// A daemon whose child leaves its process group and session, as
		// a detached watchdog does: the machine's end must kill it.
		d := a.Start(tb, "daemon", "sh", "-c", `setsid sleep 300 >/dev/null 2>&1 & echo $! > /run/leftover; trap 'exit 0' TERM; while :; do sleep 1; done`)
		if err := d.WaitReady(10*time.Second, func() error {
			data, err := os.ReadFile(a.Path("/run/leftover"))
			if err != nil || len(data) == 0 {
				return errors.New("no pid yet")
			}
			leftover, err = strconv.Atoi(strings.TrimSpace(string(data)))
			return err
		}); err != nil {
			tb.Fatal(err)
		}
	})
	f.end()
	if f.Failed() {
		t.Fatalf("machine test: %s", f.report())
	}
	for _, m := range []*Machine{a, b} {
		if _, err := os.Stat(NetnsPath(m.Netns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: namespace after the test: %v", m.Name, err)
		}
		if _, err := os.Stat(m.Root); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: folder after the test: %v", m.Name, err)
		}
		if err := syscall.Kill(m.holder.cmd.Process.Pid, 0); err == nil {
			t.Errorf("%s: holder still running", m.Name)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if data, err := os.ReadFile("/proc/" + strconv.Itoa(leftover) + "/stat"); err == nil && !strings.Contains(string(data), ") Z ") {
		t.Errorf("the daemon's detached child %d survived its machine: %s", leftover, data)
	}
}

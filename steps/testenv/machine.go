//go:build linux

package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A Machine is a simulated host: a network namespace of its own (see
// NewNetns), and a mount and UTS namespace in which folders of its own are
// bind-mounted over the machine's /etc, /var, /run, /root and /tmp (or the
// subset MachineOptions.Own names) and its host name is its name. /usr and
// the rest are shared. What runs in it (Command, Start) sees only its own
// copies: a daemon's pid file, a WireGuard socket under /var/run/wireguard,
// a state folder under /var/lib, the files an apply writes under /etc.
//
// A holder process keeps the namespaces alive; programs enter them with
// nsenter. When the test ends every process in the machine's network
// namespace (the holder, daemons, whatever they left behind) is killed and
// the namespaces, the mounts and the folders go with them.
type Machine struct {
	// Name is the machine's host name.
	Name string
	// Netns is its network namespace, as NewNetns names it.
	Netns string
	// Root is the folder on this machine holding its own etc, var, run,
	// root and tmp.
	Root   string
	own    []string
	holder *Proc
}

// MachineOptions say how NewMachine builds a machine.
type MachineOptions struct {
	// Own lists the folders the machine has its own of, among /etc (a
	// copy of this machine's), /var, /run, /root and /tmp (empty but for
	// what programs expect); nil for all five.
	Own []string
	// Setup, when set, runs before the machine starts, with the folder
	// holding its own copies: it may write its files there (Path gives
	// them).
	Setup func(m *Machine)
}

// machineDirs are the folders a machine may have its own of.
var machineDirs = []string{"/etc", "/var", "/run", "/root", "/tmp"}

// holderScript mounts the machine's own folders and keeps its namespaces
// alive until SIGTERM: "$1" is the host name, "$2" the folder of copies,
// the rest the folders to mount. Its sleeps are short: should the test
// process die without its cleanups (the holder then dies of its
// parent-death signal), none outlives it by more than a second.
const holderScript = `set -e
hostname "$1"
root=$2
shift 2
for d in "$@"; do mount --bind "$root$d" "$d"; done
trap 'exit 0' TERM
echo ready
while :; do sleep 1 & wait $!; done`

// NewMachine makes a machine called name (a host name: letters, digits,
// hyphens) with its folders under a fresh folder of dir, or of the test's
// temporary folder when dir is "". It needs root, ip, unshare, mount,
// nsenter and cp.
func NewMachine(t testing.TB, name, dir string, opts MachineOptions) *Machine {
	t.Helper()
	NeedRoot(t)
	Need(t, "ip", "unshare", "mount", "nsenter", "cp", "hostname")
	own := opts.Own
	if own == nil {
		own = machineDirs
	}
	for _, d := range own {
		if !slices.Contains(machineDirs, d) {
			t.Fatalf("machine %s: cannot have its own %s (only %v)", name, d, machineDirs)
		}
	}
	if dir == "" {
		dir = t.TempDir()
	}
	root, err := os.MkdirTemp(dir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	m := &Machine{Name: name, Root: root, own: own}
	for _, d := range own {
		if err := m.prepare(d); err != nil {
			t.Fatalf("machine %s: %v", name, err)
		}
	}
	if opts.Setup != nil {
		opts.Setup(m)
	}
	m.Netns = NewNetns(t, "zm-"+shortName(name)+"-")
	args := append([]string{"netns", "exec", m.Netns, "unshare", "--mount", "--uts", "--propagation", "private",
		"sh", "-c", holderScript, "sh", name, root}, own...)
	m.holder = Start(t, exec.Command("ip", args...), ProcOptions{Name: name + " (namespaces)"})
	if err := m.holder.WaitReady(CmdTimeout, func() error {
		if !strings.Contains(m.holder.Output(), "ready\n") {
			return fmt.Errorf("not mounted yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// shortName keeps a link-name-sized part of a machine's name.
func shortName(name string) string {
	if len(name) > 4 {
		return name[:4]
	}
	return name
}

// prepare makes the machine's own copy of d.
func (m *Machine) prepare(d string) error {
	p := filepath.Join(m.Root, d)
	switch d {
	case "/etc":
		if out, err := exec.Command("cp", "-a", "/etc", p).CombinedOutput(); err != nil {
			return fmt.Errorf("copy /etc: %v: %s", err, out)
		}
		if err := os.WriteFile(filepath.Join(p, "hostname"), []byte(m.Name+"\n"), 0o644); err != nil {
			return err
		}
	case "/var":
		for _, sub := range []string{"lib", "log", "cache", "spool", "backups", "local", "opt", "mail"} {
			if err := os.MkdirAll(filepath.Join(p, sub), 0o755); err != nil {
				return err
			}
		}
		if err := os.Mkdir(filepath.Join(p, "tmp"), 0o1777); err != nil {
			return err
		}
		if err := os.Chmod(filepath.Join(p, "tmp"), 0o1777); err != nil {
			return err
		}
		for link, target := range map[string]string{"run": "/run", "lock": "/run/lock"} {
			if err := os.Symlink(target, filepath.Join(p, link)); err != nil {
				return err
			}
		}
	case "/run":
		// sshd's privilege separation folder; lock for what expects it.
		for _, sub := range []string{"sshd", "lock"} {
			if err := os.MkdirAll(filepath.Join(p, sub), 0o755); err != nil {
				return err
			}
		}
	case "/root":
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
	case "/tmp":
		if err := os.Mkdir(p, 0o1777); err != nil {
			return err
		}
		return os.Chmod(p, 0o1777)
	}
	return nil
}

// Path is where path, as the machine sees it, is on this machine: under
// Root for a path in one of its own folders, path itself otherwise.
func (m *Machine) Path(path string) string {
	for _, d := range m.own {
		if path == d || strings.HasPrefix(path, d+"/") {
			return filepath.Join(m.Root, path)
		}
	}
	return path
}

// Command is args run inside the machine (its network, mount and UTS
// namespaces), in /, with env added to this process's environment (HOME
// is /root). It is not started.
func (m *Machine) Command(ctx context.Context, env []string, args ...string) *exec.Cmd {
	pid := fmt.Sprint(m.holder.cmd.Process.Pid)
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", pid, "--mount", "--uts", "--net", "--"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = append(append(os.Environ(), "HOME=/root"), env...)
	return cmd
}

// KillAll SIGKILLs every process in the machine but its holder, and waits
// (at most StopTimeout) until they are gone: what programs left running
// there (ssh connection masters, detached helpers) goes before the test
// stops the daemons of other machines they talk to.
func (m *Machine) KillAll() error {
	holder := m.holder.cmd.Process.Pid
	deadline := time.Now().Add(StopTimeout)
	for {
		pids, err := NetnsPIDs(m.Netns)
		if err != nil {
			return err
		}
		var left []int
		for _, pid := range pids {
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid != holder {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("machine %s: processes %v still there %s after SIGKILL", m.Name, left, StopTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Result is how a program run in a machine ended.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs args inside the machine, at most timeout, and returns how it
// ended; it fails t if the program could not run to an exit of its own.
func (m *Machine) Run(t testing.TB, timeout time.Duration, env []string, args ...string) Result {
	t.Helper()
	stdout, stderr, err := RunCmd(context.Background(), timeout, m.Command(context.Background(), env, args...))
	code, err := ExitCode(err)
	if err != nil {
		t.Fatalf("%s: %v", m.Name, err)
	}
	return Result{code, stdout, stderr}
}

// Must runs args inside the machine, at most CmdTimeout, and returns their
// standard output; it fails t unless they exit 0.
func (m *Machine) Must(t testing.TB, args ...string) string {
	t.Helper()
	r := m.Run(t, CmdTimeout, nil, args...)
	if r.Code != 0 {
		t.Fatalf("%s: %s: exit %d\n%s%s", m.Name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// Start runs a daemon inside the machine (see the package's Start: it is
// stopped when the test ends, and must then exit 0).
func (m *Machine) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return Start(t, m.Command(context.Background(), nil, args...), ProcOptions{Name: m.Name + " " + name})
}

// A Bridge joins machines at layer 2: a bridge br0 in a network namespace
// of its own, and a veth pair per machine.
type Bridge struct {
	Netns string
	n     int
}

// NewBridge makes the bridge; it goes when the test ends.
func NewBridge(t testing.TB) *Bridge {
	t.Helper()
	b := &Bridge{Netns: NewNetns(t, "zm-br-")}
	MustRun(t, "ip", "-n", b.Netns, "link", "add", "br0", "type", "bridge")
	MustRun(t, "ip", "-n", b.Netns, "link", "set", "br0", "up")
	return b
}

// Attach gives network namespace netns an eth0 on the bridge holding addrs
// (CIDR), with on-link routes to the networks routes.
func (b *Bridge) Attach(t testing.TB, netns string, addrs, routes []string) {
	t.Helper()
	b.n++
	veth := fmt.Sprintf("veth%d", b.n)
	MustRun(t, "ip", "-n", b.Netns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
	MustRun(t, "ip", "-n", b.Netns, "link", "set", veth, "master", "br0", "up")
	for _, a := range addrs {
		MustRun(t, "ip", "-n", netns, "addr", "add", a, "dev", "eth0")
	}
	MustRun(t, "ip", "-n", netns, "link", "set", "eth0", "up")
	for _, r := range routes {
		MustRun(t, "ip", "-n", netns, "route", "add", r, "dev", "eth0")
	}
}

package host

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
)

// NewLive returns an applier for this host's kernel and services, files
// under root ("/"), its journal in journalDir. Close releases it. Confirm
// and Rollback stop the watchdog; UseProcesses says how to start it and
// the userspace WireGuard device.
func NewLive(root, journalDir string) (*Applier, func(), error) {
	wg, err := wgctrl.New()
	if err != nil {
		return nil, nil, fmt.Errorf("wireguard: %w", err)
	}
	run := execRunner{}
	a := &Applier{Root: root, Live: true, JournalDir: journalDir, Firewall: kernelFirewall{run: run}, WG: wg, Run: run, StopWatchdog: StopWatchdog}
	return a, func() { wg.Close() }, nil
}

// NewFiles returns an applier that only writes files under root: no kernel,
// no services (an image's tree, a test root).
func NewFiles(root, journalDir string) *Applier {
	return &Applier{Root: root, JournalDir: journalDir, Run: execRunner{}}
}

// Detach starts argv as a process of its own session that outlives this
// one (and the SSH session that started it), its output appended to
// logPath, and returns its pid.
func Detach(argv []string, logPath string) (int, error) {
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("detach: %w", err)
	}
	defer log.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("detach: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("detach %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	// Reap it if it ends while we still run; never wait for it otherwise.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// SystemdTimer runs argv once after a delay as a transient systemd timer
// unit, which outlives this process and survives its session.
func SystemdTimer(ctx context.Context, unit string, after time.Duration, argv []string) error {
	args := append([]string{"--unit", unit, "--on-active", fmt.Sprintf("%dms", after.Milliseconds()),
		"--timer-property=AccuracySec=100ms", "--quiet"}, argv...)
	if out, err := exec.CommandContext(ctx, "systemd-run", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("systemd-run: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Systemd tells whether systemd runs this host (it is PID 1).
func Systemd() bool { return systemd("/") }

// running tells whether the process pid that started at start (clock
// ticks after boot, as procStart reads it; 0: unknown) still runs: a pid
// recorded before a reboot or long ago may belong to another process now.
func running(pid int, start uint64) bool {
	return Alive(pid) && (start == 0 || procStart(pid) == start)
}

// procStart reads when process pid started, in clock ticks after boot
// (field 22 of /proc/PID/stat); 0 when it cannot be read.
func procStart(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after its last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0
	}
	return start
}

// Alive tells whether a process is running.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

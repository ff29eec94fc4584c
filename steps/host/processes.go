package host

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"ztwizard/steps/wgdevice"
)

// UseProcesses makes a live applier start what must outlive it as
// processes of the ztwizard binary exe: the watchdog (`ztwizard rollback
// --watchdog`) that rolls an unconfirmed apply back at its deadline, and
// the userspace WireGuard device (`ztwizard wg device`) for kernels
// without WireGuard. Where systemd runs they are a transient timer and the
// device's unit; elsewhere detached processes, their output appended to
// logs in the apply folder of the state store state.
func (a *Applier) UseProcesses(exe, state string) {
	a.StartWatchdog = func(j *Journal) (string, error) {
		return startWatchdog(context.Background(), exe, state, j)
	}
	a.StopWatchdog = StopWatchdog
	a.StartDevice = func(ctx context.Context, name string) (int, error) {
		return startDevice(ctx, exe, state, name)
	}
}

// startWatchdog starts what rolls the apply back at its deadline: a
// transient systemd timer where systemd runs, else a detached process.
func startWatchdog(ctx context.Context, exe, state string, j *Journal) (string, error) {
	argv := []string{exe, "rollback", "--state", state, "--watchdog", j.ID, "--at", j.Deadline.Format(time.RFC3339Nano)}
	if Systemd() {
		unit := "ztwizard-rollback-" + j.ID
		if err := SystemdTimer(ctx, unit, time.Until(j.Deadline), argv); err != nil {
			return "", err
		}
		return "unit " + unit, nil
	}
	pid, err := Detach(argv, filepath.Join(state, "apply", "watchdog.log"))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("pid %d", pid), nil
}

// StopWatchdog stops the watchdog of a pending apply: its systemd timer,
// or its detached process.
func StopWatchdog(j *Journal) {
	if unit, ok := strings.CutPrefix(j.Watchdog, "unit "); ok {
		_ = runQuiet("systemctl", "stop", unit+".timer")
		return
	}
	var pid int
	if _, err := fmt.Sscanf(j.Watchdog, "pid %d", &pid); err == nil && pid > 0 && pid != os.Getpid() {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// startDevice starts the userspace WireGuard device name: its unit where
// systemd runs, else a detached `ztwizard wg device` process, whose pid it
// returns.
func startDevice(ctx context.Context, exe, state, name string) (int, error) {
	pid := 0
	if Systemd() {
		if err := runQuiet("systemctl", "daemon-reload"); err != nil {
			return 0, err
		}
		if err := runQuiet("systemctl", "start", DeviceUnit(name)); err != nil {
			return 0, err
		}
	} else {
		var err error
		if pid, err = Detach([]string{exe, "wg", "device", name}, filepath.Join(state, "apply", "wg-"+name+".log")); err != nil {
			return 0, err
		}
	}
	if err := wgdevice.Ready(name, 10*time.Second); err != nil {
		return pid, err
	}
	return pid, nil
}

// runQuiet runs a command, its output part of the error only.
func runQuiet(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

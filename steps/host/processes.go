package host

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// or its detached process, but only while that process is still the
// watchdog of this journal (its start time and its command line): a pid
// recorded before a reboot may belong to an unrelated process now.
func StopWatchdog(j *Journal) {
	if unit, ok := strings.CutPrefix(j.Watchdog, "unit "); ok {
		_ = runQuiet("systemctl", "stop", unit+".timer")
		return
	}
	pid := watchdogPID(j)
	if pid <= 0 || pid == os.Getpid() {
		return
	}
	// The handle pins the process (a pidfd): the one checked below is the
	// one killed, even if it ends and its pid is reused in between.
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	defer p.Release()
	if !isWatchdog(pid, j) {
		return
	}
	_ = p.Kill()
}

// isWatchdog tells whether process pid is the watchdog of journal j: it
// started when the journal says (where it says) and runs `rollback
// --watchdog ID`.
func isWatchdog(pid int, j *Journal) bool {
	if !running(pid, j.WatchdogStart) {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
	for i := 1; i+1 < len(args); i++ {
		if args[i] == "--watchdog" && args[i+1] == j.ID {
			return slices.Contains(args[1:i], "rollback")
		}
	}
	return false
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

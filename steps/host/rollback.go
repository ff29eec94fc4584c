package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
)

// ErrNothingPending is returned by Confirm and Rollback when no apply waits.
var ErrNothingPending = errors.New("no apply is pending")

// Pending returns the journal of an apply that waits for confirmation or
// was interrupted, or nil.
func (a *Applier) Pending() (*Journal, error) { return a.journal().load() }

// Confirm keeps the pending apply: its journal goes into the history and
// its watchdog is stopped.
func (a *Applier) Confirm() (*Journal, error) {
	js := a.journal()
	jr, err := js.load()
	if err != nil {
		return nil, err
	}
	if jr == nil {
		return nil, ErrNothingPending
	}
	if jr.Phase != PhaseApplied {
		return nil, fmt.Errorf("the apply of node %s (pid %d) did not finish; run `ztwizard rollback`", jr.Node, jr.PID)
	}
	if err := js.close(jr, "confirmed"); err != nil {
		return nil, err
	}
	if a.StopWatchdog != nil {
		a.StopWatchdog(jr)
	}
	return jr, nil
}

// Rollback undoes the pending apply now. With id set it undoes only that
// apply (a watchdog names the one it guards), so a later apply is safe.
func (a *Applier) Rollback(ctx context.Context, id string) (*Journal, error) {
	jr, err := a.journal().load()
	if err != nil {
		return nil, err
	}
	if jr == nil || (id != "" && jr.ID != id) {
		return nil, ErrNothingPending
	}
	if err := a.rollback(ctx, jr, "rolled back"); err != nil {
		return nil, err
	}
	return jr, nil
}

// RollbackAtBoot undoes, as the host boots, an apply that a reboot left
// unconfirmed or unfinished, before the firewall, the network and the
// daemons start: its files, its units and the firewall ruleset come back as
// they were. Daemons are not running yet and read the restored files when
// they start; the WireGuard interface does not exist yet and its unit
// brings the old one up; the watchdog died with the old boot.
func (a *Applier) RollbackAtBoot(ctx context.Context) (*Journal, error) {
	jr, err := a.journal().load()
	if err != nil {
		return nil, err
	}
	if jr == nil {
		return nil, ErrNothingPending
	}
	a.atBoot = true
	defer func() { a.atBoot = false }()
	if err := a.rollback(ctx, jr, "rolled back at boot: not confirmed before the reboot"); err != nil {
		return nil, err
	}
	return jr, nil
}

// rollback restores everything the journal lists, then closes the
// journal: the firewall first (what an admin locked out waits for), then
// WireGuard, units, files, and the reloads that make daemons read the
// restored files. Every restoration is idempotent, so a rollback that was
// itself interrupted can run again.
func (a *Applier) rollback(ctx context.Context, jr *Journal, outcome string) error {
	var errs []error
	if jr.Firewall != nil {
		a.progress("rollback: firewall")
		errs = append(errs, a.Firewall.Restore(ctx, jr.Firewall.Text, jr.Firewall.Existed))
	}
	if jr.WG != nil && !a.atBoot {
		a.progress("rollback: wireguard %s", jr.WG.Name)
		errs = append(errs, a.restoreWG(ctx, jr.WG))
	}
	// Units are disabled while their files are still there.
	for i := len(jr.Enabled) - 1; i >= 0; i-- {
		if a.loadState(ctx, jr.Enabled[i]) == "not-found" {
			continue // never installed: its enable failed, nothing to undo
		}
		a.progress("rollback: disable %s", jr.Enabled[i])
		args := []string{"disable", "--quiet", jr.Enabled[i]}
		if strings.HasSuffix(jr.Enabled[i], ".timer") {
			// The apply started it: it stops with its enable undone.
			// --no-block: a rollback at boot runs before sysinit.target.
			args = []string{"disable", "--quiet", "--now", "--no-block", jr.Enabled[i]}
		}
		if a.atBoot {
			// One daemon-reload below, once the files are back.
			args = []string{"disable", "--quiet", "--no-reload", jr.Enabled[i]}
		}
		if out, err := a.Run.Run(ctx, nil, "systemctl", args...); err != nil {
			errs = append(errs, fmt.Errorf("systemctl disable %s: %w: %s", jr.Enabled[i], err, strings.TrimSpace(string(out))))
		}
	}
	js := a.journal()
	for i := len(jr.Pruned) - 1; i >= 0; i-- {
		if err := os.MkdirAll(filepath.Join(a.Root, jr.Pruned[i]), 0o755); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", jr.Pruned[i], err))
		}
	}
	files := slices.Clone(jr.Files)
	slices.Reverse(files)
	if len(files) > 0 {
		a.progress("rollback: %d files", len(files))
	}
	for _, b := range files {
		errs = append(errs, a.restoreFile(js, b))
	}
	errs = append(errs, a.removeTemps(jr))
	for i := len(jr.Dirs) - 1; i >= 0; i-- {
		errs = append(errs, removeEmptyDir(filepath.Join(a.Root, jr.Dirs[i])))
	}
	if jr.Manifest != nil {
		errs = append(errs, js.saveManifest(jr.Manifest))
	} else {
		errs = append(errs, js.removeManifest())
	}
	unitFiles := slices.ContainsFunc(jr.Files, func(b FileBackup) bool { return strings.HasPrefix(b.Path, steps.SystemdDir+"/") })
	if systemd(a.Root) && (unitFiles || (a.atBoot && len(jr.Enabled) > 0)) {
		if out, err := a.Run.Run(ctx, nil, "systemctl", "daemon-reload"); err != nil {
			errs = append(errs, fmt.Errorf("systemctl daemon-reload: %w: %s", err, strings.TrimSpace(string(out))))
		}
	}
	if a.atBoot {
		jr.Reloads, jr.Restarts = nil, nil // nothing runs yet
	}
	for _, u := range jr.Reloads {
		a.progress("rollback: reload %s", u)
		_, err := a.serve(ctx, Action{Unit: u})
		errs = append(errs, err)
	}
	for _, u := range jr.Restarts {
		a.progress("rollback: restart %s", u)
		_, err := a.serve(ctx, Action{Unit: u, Restart: true, Why: "rollback"})
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if a.StopWatchdog != nil && jr.Watchdog != "" && os.Getpid() != watchdogPID(jr) {
		a.StopWatchdog(jr)
	}
	return js.close(jr, outcome)
}

// removeTemps removes the temporary files an apply killed in the middle of
// writing a file leaves beside it (atomicfile's ".atomicfile-*.tmp"). No
// other writer works in these folders while the state is locked.
func (a *Applier) removeTemps(jr *Journal) error {
	dirs := map[string]bool{}
	for _, b := range jr.Files {
		dirs[filepath.Dir(filepath.Join(a.Root, b.Path))] = true
	}
	var errs []error
	for dir := range dirs {
		temps, _ := filepath.Glob(filepath.Join(dir, ".atomicfile-*.tmp"))
		for _, tmp := range temps {
			if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("restore: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// restoreFile puts a file back as it was, or removes it if it was not there.
func (a *Applier) restoreFile(js journalStore, b FileBackup) error {
	dst := filepath.Join(a.Root, b.Path)
	if !b.Existed {
		if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore %s: %w", b.Path, err)
		}
		return nil
	}
	data, err := js.readBackup(b.Backup)
	if err != nil {
		return err
	}
	if same, err := atomicfile.Equal(dst, data, b.Mode); err == nil && same && hasOwner(dst, b.UID, b.GID) {
		return nil // never changed: leave it as it is, mtime included
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("restore %s: %w", b.Path, err)
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		uid, gid = b.UID, b.GID
	}
	if err := atomicfile.WriteFileOwned(dst, data, b.Mode, uid, gid); err != nil {
		return fmt.Errorf("restore %s: %w", b.Path, err)
	}
	return nil
}

// restoreWG puts the WireGuard interface back: gone if it was not there
// (the userspace device this apply started is stopped, and any that an
// interrupted apply started before it could record it), else its old
// configuration and addresses.
func (a *Applier) restoreWG(ctx context.Context, s *WGSnapshot) error {
	if !s.Existed {
		if systemd(a.Root) {
			// Its unit would start the device again once the link goes.
			// A unit that is not loaded has nothing to stop: the checks
			// below tell whether a device is left.
			_, _ = a.Run.Run(ctx, nil, "systemctl", "stop", DeviceUnit(s.Name))
		}
		err := errors.Join(stopDevices(s.Name, s.DevicePID, 10*time.Second), deleteLink(s.Name))
		if err != nil {
			return err
		}
		return waitGone(a.WG, s.Name, 10*time.Second)
	}
	cfg, err := s.config()
	if err != nil {
		return fmt.Errorf("wireguard: snapshot of %s: %w", s.Name, err)
	}
	if err := a.WG.ConfigureDevice(s.Name, cfg); err != nil {
		return fmt.Errorf("wireguard: restore %s: %w", s.Name, err)
	}
	return setAddresses(s.Name, s.Addresses)
}

// hasOwner tells whether path belongs to uid and gid (always true when not
// running as root, where files cannot be given away).
func hasOwner(path string, uid, gid int) bool {
	if os.Geteuid() != 0 {
		return true
	}
	fi, err := os.Lstat(path)
	return err == nil && statOwner(fi, uid, gid)
}

// watchdogPID is the process a detached watchdog runs in, or 0.
func watchdogPID(jr *Journal) int {
	var pid int
	if _, err := fmt.Sscanf(jr.Watchdog, "pid %d", &pid); err != nil {
		return 0
	}
	return pid
}

// WaitDeadline sleeps until the journal's deadline (or ctx ends); the
// watchdog calls it before it rolls back.
func WaitDeadline(ctx context.Context, deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Installed is the number of files the last apply installed.
func (a *Applier) Installed() (int, error) {
	m, err := a.journal().manifest()
	if m == nil {
		return 0, err
	}
	return len(m.Files), nil
}

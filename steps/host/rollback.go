package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

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

// rollback restores everything the journal lists, newest step first, then
// closes the journal. Every restoration is idempotent, so a rollback that
// was itself interrupted can run again.
func (a *Applier) rollback(ctx context.Context, jr *Journal, outcome string) error {
	var errs []error
	if jr.WG != nil {
		a.progress("rollback: wireguard %s", jr.WG.Name)
		errs = append(errs, a.restoreWG(jr.WG))
	}
	if jr.Firewall != nil {
		a.progress("rollback: firewall")
		errs = append(errs, a.Firewall.Restore(ctx, jr.Firewall.Text, jr.Firewall.Existed))
	}
	js := a.journal()
	files := slices.Clone(jr.Files)
	slices.Reverse(files)
	if len(files) > 0 {
		a.progress("rollback: %d files", len(files))
	}
	for _, b := range files {
		errs = append(errs, a.restoreFile(js, b))
	}
	if jr.Manifest != nil {
		errs = append(errs, js.saveManifest(jr.Manifest))
	} else if _, err := os.Stat(filepath.Join(js.dir, "manifest.json")); err == nil {
		errs = append(errs, os.Remove(filepath.Join(js.dir, "manifest.json")))
	}
	for _, u := range jr.Reloads {
		a.progress("rollback: reload %s", u)
		errs = append(errs, a.reload(ctx, u))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if a.StopWatchdog != nil && jr.Watchdog != "" && os.Getpid() != watchdogPID(jr) {
		a.StopWatchdog(jr)
	}
	return js.close(jr, outcome)
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
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("restore %s: %w", b.Path, err)
	}
	if err := atomicfile.WriteFile(dst, data, b.Mode); err != nil {
		return fmt.Errorf("restore %s: %w", b.Path, err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(dst, b.UID, b.GID); err != nil {
			return fmt.Errorf("restore %s: %w", b.Path, err)
		}
	}
	return nil
}

// restoreWG puts the WireGuard interface back: gone if it was not there
// (the userspace device this apply started is stopped), else its old
// configuration and addresses.
func (a *Applier) restoreWG(s *WGSnapshot) error {
	if !s.Existed {
		err := deleteLink(s.Name)
		if s.DevicePID > 0 {
			if p, perr := os.FindProcess(s.DevicePID); perr == nil {
				_ = p.Signal(syscall.SIGTERM)
			}
		}
		return err
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
	return len(m), err
}

package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one line of the audit log.
type Event struct {
	Time     time.Time `json:"time"`
	Action   string    `json:"action"` // "create", "issue", "sign", "revoke", "crl", "rotate", "apply", ...
	Kind     string    `json:"kind"`   // "x509-ca", "x509-server", "x509-client", "ssh-user-ca", "ssh-host-ca", "ssh-user", "ssh-host", "wireguard", "crl", ...
	Name     string    `json:"name"`   // for whom
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"valid_until,omitzero"`
	Detail   string    `json:"detail,omitempty"`
}

// Audit appends evs to the audit log, the file audit.log in the store (mode
// 0600), one JSON line each, written together with a single write and
// synced once: revoking 50,000 certificates of one name is one sync, not
// 50,000. Lines already in the log are never rewritten. A zero Time is set
// to the current time. Audit does not need the lock.
func (s *Store) Audit(evs ...Event) error {
	if s.dry != nil {
		for _, ev := range evs {
			s.dryAudit(ev)
		}
		return nil
	}
	var lines []byte
	for _, ev := range evs {
		if ev.Time.IsZero() {
			ev.Time = time.Now().UTC()
		}
		line, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("state: audit: %w", err)
		}
		lines = append(append(lines, line...), '\n')
	}
	if len(lines) == 0 {
		return nil
	}
	if err := s.appendLine(auditName, lines); err != nil {
		return fmt.Errorf("state: audit: %w", err)
	}
	return nil
}

func (s *Store) appendLine(rel string, line []byte) (err error) {
	path, err := s.parents(rel, false)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("%s: %w", path, ErrSymlink)
	}
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			return err
		}
	}
	if _, err := f.Write(line); err != nil {
		return err
	}
	return syncAppended(f)
}

// syncAppended waits until what appendLine wrote is on disk; a variable so
// that a test can count the syncs.
var syncAppended = func(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// AuditLog returns the events of the audit log, oldest first. A missing log
// is empty.
func (s *Store) AuditLog() ([]Event, error) {
	var events []Event
	if s.dry != nil {
		defer func() {
			_, pending := s.Pending()
			events = append(events, pending...)
		}()
	}
	data, err := s.readFile(auditName)
	if errors.Is(err, fs.ErrNotExist) {
		return events, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", auditName, err)
	}
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return events, fmt.Errorf("state: read %s: line %d: %w", auditName, i+1, err)
		}
		events = append(events, ev)
	}
	return events, nil
}

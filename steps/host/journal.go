package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"ztwizard/steps/atomicfile"
)

// Journal phases.
const (
	PhaseApplying = "applying" // steps under way; a dead applier left it half done
	PhaseApplied  = "applied"  // done, waiting for `ztwizard confirm` before Deadline
)

// Journal records an apply while it runs and until it is confirmed, so that
// a rollback, a watchdog or the next apply can undo exactly what was done,
// even after the applier was killed.
type Journal struct {
	ID       string       `json:"id"`
	Node     string       `json:"node"`
	PID      int          `json:"pid"`
	PIDStart uint64       `json:"pid_start,omitempty"` // when PID started (clock ticks after boot): a reused pid is not the apply
	Started  time.Time    `json:"started"`
	Deadline time.Time    `json:"deadline,omitzero"` // zero: no confirm window
	Phase    string       `json:"phase"`
	Files    []FileBackup `json:"files,omitempty"`
	Dirs     []string     `json:"dirs,omitempty"`     // folders this apply makes: removed again by a rollback
	Pruned   []string     `json:"pruned,omitempty"`   // ztwizard's folders this apply removes once empty
	Manifest *Manifest    `json:"manifest,omitempty"` // the manifest before this apply; nil: none
	Firewall *FWSnapshot  `json:"firewall,omitempty"`
	WG       *WGSnapshot  `json:"wireguard,omitempty"`
	Reloads  []string     `json:"reloads,omitempty"`  // units reloaded: reloaded again by a rollback
	Restarts []string     `json:"restarts,omitempty"` // units restarted: restarted again by a rollback
	Enabled  []string     `json:"enabled,omitempty"`  // units this apply enabled: disabled again by a rollback
	Watchdog string       `json:"watchdog,omitempty"` // how the watchdog runs: "pid 123" or a systemd unit
	// WatchdogStart is when a detached watchdog's process started (clock
	// ticks after boot): a reused pid is not the watchdog.
	WatchdogStart uint64 `json:"watchdog_start,omitempty"`
}

// FileBackup is a file as it was before the apply.
type FileBackup struct {
	Path    string      `json:"path"`
	Existed bool        `json:"existed"`
	Mode    fs.FileMode `json:"mode,omitempty"`
	UID     int         `json:"uid,omitempty"`
	GID     int         `json:"gid,omitempty"`
	Backup  string      `json:"backup,omitempty"` // the saved content, relative to the journal folder
	Done    bool        `json:"done"`             // the new version (or removal) was made
}

// FWSnapshot is the inet ztwizard table as it was before the apply.
type FWSnapshot struct {
	Existed bool   `json:"existed"`
	Text    string `json:"text,omitempty"`
	Done    bool   `json:"done"`
}

// journalStore keeps the journal and its file backups in a folder of the
// state store (0700; every file 0600).
type journalStore struct{ dir string }

func (j journalStore) path() string { return filepath.Join(j.dir, "journal.json") }

// load returns the pending journal, or nil when there is none.
func (j journalStore) load() (*Journal, error) {
	data, err := os.ReadFile(j.path())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var jr Journal
	if err := json.Unmarshal(data, &jr); err != nil {
		return nil, fmt.Errorf("journal: %s: %w", j.path(), err)
	}
	return &jr, nil
}

func (j journalStore) save(jr *Journal) error {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	data, err := json.MarshalIndent(jr, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := atomicfile.WriteFile(j.path(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// backup saves a file's current content under the journal folder.
func (j journalStore) backup(id string, i int, content []byte) (string, error) {
	rel := filepath.Join("backups", id, fmt.Sprintf("%04d", i))
	dst := filepath.Join(j.dir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	if err := atomicfile.WriteFile(dst, content, 0o600); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	return rel, nil
}

func (j journalStore) readBackup(rel string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(j.dir, rel))
	if err != nil {
		return nil, fmt.Errorf("journal: backup: %w", err)
	}
	return data, nil
}

// close ends a journal: it goes into the history and its backups away.
func (j journalStore) close(jr *Journal, outcome string) error {
	hist := filepath.Join(j.dir, "history")
	if err := os.MkdirAll(hist, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	data, err := json.MarshalIndent(struct {
		*Journal
		Outcome string    `json:"outcome"`
		Ended   time.Time `json:"ended"`
	}{jr, outcome, time.Now().UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(hist, jr.ID+".json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := os.Remove(j.path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(j.dir, "backups", jr.ID)); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Manifest is what the last apply installed: its files, so a later plan
// that drops one removes it, and the folders ztwizard made for them, removed
// again once a later plan leaves them empty.
type Manifest struct {
	Files []string `json:"files"`
	Dirs  []string `json:"dirs,omitempty"`
	// Firewall ties the plan's table to the kernel's as this apply left
	// it (see firewallMark); empty when unknown.
	Firewall string `json:"firewall,omitempty"`
}

// manifest reads the manifest; nil when nothing was applied yet. A bare
// list of files is read as a manifest without folders.
func (j journalStore) manifest() (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(j.dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	m := &Manifest{}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		err = json.Unmarshal(data, &m.Files)
	} else {
		err = json.Unmarshal(data, m)
	}
	if err != nil {
		return nil, fmt.Errorf("journal: manifest: %w", err)
	}
	return m, nil
}

func (j journalStore) saveManifest(m *Manifest) error {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(j.dir, "manifest.json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// removeManifest forgets what was applied (a rollback of the first apply).
func (j journalStore) removeManifest() error {
	if err := os.Remove(filepath.Join(j.dir, "manifest.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

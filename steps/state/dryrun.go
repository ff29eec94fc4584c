package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// OpenDryRun opens the state folder dir so that nothing in it is created
// or changed: writes, removals and audit records stay in memory, where
// later reads of the same Store see them, and Pending lists them. The
// folder need not exist (it then reads as empty) and is not made; its
// modes are left as they are. Lock takes the store's lock only where the
// lock file already is, and removes no leftovers. It is for showing what a
// command would do (plan, apply --dry-run).
func OpenDryRun(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	switch fi, err := os.Lstat(abs); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("state: open %s: %w", dir, ErrSymlink)
	case !fi.IsDir():
		return nil, fmt.Errorf("state: open %s: %w", dir, syscall.ENOTDIR)
	}
	return &Store{dir: abs, dry: &overlay{files: map[string][]byte{}, deleted: map[string]bool{}}}, nil
}

// overlay holds what a dry-run store would have written.
type overlay struct {
	files   map[string][]byte
	deleted map[string]bool
	events  []Event
	changes []Change
}

// Change is one file a dry-run store would have created, replaced or
// removed.
type Change struct {
	Path   string // relative to the store
	Action string // "create", "update" or "remove"
}

// DryRun tells whether the store was opened with OpenDryRun.
func (s *Store) DryRun() bool { return s.dry != nil }

// Pending lists, in the order of their first change, the files a dry-run
// store would have created, updated or removed, and the audit records it
// would have appended. It is empty for a store opened with Open.
func (s *Store) Pending() ([]Change, []Event) {
	if s.dry == nil {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dry.changes), slices.Clone(s.dry.events)
}

// onDisk tells whether rel is in the real folder.
func (s *Store) onDisk(rel string) bool {
	path, err := s.parents(rel, false)
	if err != nil {
		return false
	}
	_, err = os.Lstat(path)
	return err == nil
}

// note records the first change to rel.
func (s *Store) note(rel, action string) {
	for i, c := range s.dry.changes {
		if c.Path == rel {
			if c.Action == "create" && action == "remove" {
				s.dry.changes = slices.Delete(s.dry.changes, i, i+1)
			} else if action == "remove" || c.Action == "remove" {
				s.dry.changes[i].Action = action
			}
			return
		}
	}
	s.dry.changes = append(s.dry.changes, Change{Path: rel, Action: action})
}

func (s *Store) dryWrite(rel string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	action := "create"
	if s.onDisk(rel) && !s.dry.deleted[rel] {
		action = "update"
	}
	s.dry.files[rel] = slices.Clone(data)
	delete(s.dry.deleted, rel)
	s.note(rel, action)
}

// dryRead returns what the overlay holds for rel: found tells whether it
// decides (content, or removed).
func (s *Store) dryRead(rel string) (data []byte, found bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dry.deleted[rel] {
		return nil, true, &fs.PathError{Op: "open", Path: s.Path(rel), Err: fs.ErrNotExist}
	}
	if d, ok := s.dry.files[rel]; ok {
		return slices.Clone(d), true, nil
	}
	return nil, false, nil
}

func (s *Store) dryRemove(rel string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, inMemory := s.dry.files[rel]
	if !inMemory && (s.dry.deleted[rel] || !s.onDisk(rel)) {
		return &fs.PathError{Op: "remove", Path: s.Path(rel), Err: fs.ErrNotExist}
	}
	delete(s.dry.files, rel)
	if s.onDisk(rel) {
		s.dry.deleted[rel] = true
	}
	s.note(rel, "remove")
	return nil
}

func (s *Store) dryAudit(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	s.dry.events = append(s.dry.events, ev)
}

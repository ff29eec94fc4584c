package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"ztwizard/steps/atomicfile"
)

// Repairs returns what Open and Lock have put right in the store (modes
// too open, leftovers of a killed run), one line each, so that a command
// can say so.
func (s *Store) Repairs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.repairs...)
}

func (s *Store) repaired(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repairs = append(s.repairs, fmt.Sprintf(format, a...))
}

// publicFile tells whether a store file may be readable by others: a
// certificate, CRL, KRL or public key. Every other file is private (0600).
func publicFile(name string) bool {
	switch {
	case strings.HasSuffix(name, "-key.pem"):
		return false
	case strings.HasSuffix(name, ".pem"), strings.HasSuffix(name, ".pub"), strings.HasSuffix(name, ".krl"):
		return true
	}
	return false
}

// fixModes makes every folder of the store 0700 and takes group and world
// access away from its private files (and write access from its public
// ones), noting each change. Symlinks are left alone: the store refuses to
// use them.
func (s *Store) fixModes() error {
	return filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if path == s.dir || d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		old := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = 0o700
		case !fi.Mode().IsRegular():
			return nil
		case publicFile(d.Name()):
			want = old.Perm() &^ 0o133
		default:
			want = old.Perm() &^ 0o077
		}
		if old == want {
			return nil
		}
		if err := os.Chmod(path, want); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.dir, path)
		s.repaired("%s was mode %04o, now %04o", rel, uint32(old.Perm()), uint32(want))
		return nil
	})
}

// removeLeftovers removes the temporary files of writes that never reached
// their rename (a process killed half-way; one may hold a private key).
// It runs under the lock, which every writer of the store holds.
func (s *Store) removeLeftovers() error {
	return filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		name := d.Name()
		if !d.Type().IsRegular() || !strings.HasPrefix(name, atomicfile.TempPrefix) || !strings.HasSuffix(name, atomicfile.TempSuffix) {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		rel, _ := filepath.Rel(s.dir, path)
		s.repaired("removed %s, left by a write that was cut short", rel)
		return nil
	})
}

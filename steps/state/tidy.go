package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
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

// leafFolders are the folders that hold one file per certificate issued
// or per node (patterns for path.Match, relative to the store). Open checks
// their own mode but does not list them, so that opening a store costs the
// same with 100,000 certificates or 1,000 nodes' WireGuard keys as with
// one: their files are checked when read (readFile, ReadFiles). A folder
// that is 0700 keeps group and others out of its files whatever their
// modes.
var leafFolders = []string{"ssh/certs", "x509/*/*", "*/retired/*", "wireguard"}

func isLeafFolder(rel string) bool {
	for _, p := range leafFolders {
		if ok, _ := path.Match(p, filepath.ToSlash(rel)); ok {
			return true
		}
	}
	return false
}

// fixModes makes every folder of the store 0700 and takes group and world
// access away from its private files (and write access from its public
// ones), noting each change, except for the files inside leafFolders.
// Symlinks are left alone: the store refuses to use them.
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
		rel, _ := filepath.Rel(s.dir, path)
		if err := s.fixMode(rel, fi); err != nil {
			return err
		}
		if d.IsDir() && isLeafFolder(rel) {
			return filepath.SkipDir
		}
		return nil
	})
}

// fixMode gives the store file or folder rel, whose Lstat is fi, the mode
// it should have, noting a change.
func (s *Store) fixMode(rel string, fi fs.FileInfo) error {
	old := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	var want fs.FileMode
	switch {
	case fi.IsDir():
		want = 0o700
	case !fi.Mode().IsRegular():
		return nil
	case publicFile(fi.Name()):
		want = old.Perm() &^ 0o133
	default:
		want = old.Perm() &^ 0o077
	}
	if old == want {
		return nil
	}
	if err := os.Chmod(filepath.Join(s.dir, rel), want); err != nil {
		return err
	}
	s.repaired("%s was mode %04o, now %04o", rel, uint32(old.Perm()), uint32(want))
	return nil
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

// Package state keeps a site's secrets (CA keys, SSH CA keys, WireGuard keys,
// issued certificates) in a state folder: a 0700 folder of files written
// atomically, an append-only audit log (audit.log), an index of issued
// certificates (index.json) with its high-water mark (counters.json), and a
// lock file (lock) that serialises ztwizard processes working on the same
// folder.
//
// Nothing in the store follows a symlink: a symlinked folder or file inside
// the store is an error.
package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"ztwizard/steps/atomicfile"
)

// Files the store manages itself; WriteFile and Remove refuse them.
const (
	lockName  = "lock"
	auditName = "audit.log"
	indexName = "index.json"
)

// ErrSymlink is wrapped by the errors returned when a path inside the store,
// or the store itself, is a symlink. It is atomicfile.ErrSymlink.
var ErrSymlink = atomicfile.ErrSymlink

// ErrInvalidPath is wrapped by the errors returned for a path that is not a
// clean relative path inside the store, or names a file the store manages
// itself (lock, audit.log, counters.json).
var ErrInvalidPath = errors.New("invalid path")

// Store is an open state folder. Its methods may be used from several
// goroutines; read-modify-write sequences must hold Lock.
type Store struct {
	dir string

	mu      sync.Mutex
	repairs []string
	dry     *overlay // OpenDryRun: changes kept in memory
}

// Open opens the state folder dir, creating it and its missing parents with
// mode 0700. If dir exists with another mode it is changed to 0700, and so
// is every folder inside it; private files inside it that group or others
// may read are made 0600, public ones (certificates, public keys) lose any
// write access but their owner's (files in the folders that hold one file
// per certificate, such as ssh/certs, when they are read); temporary files
// of writes cut short are removed (see Lock) unless another process holds
// the lock. Each such change is listed by Repairs. A dir that is a symlink
// or not a folder is refused. Open does not keep the lock.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	fi, err := os.Lstat(abs)
	switch {
	case err != nil:
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("state: open %s: %w", dir, ErrSymlink)
	case !fi.IsDir():
		return nil, fmt.Errorf("state: open %s: %w", dir, syscall.ENOTDIR)
	}
	s := &Store{dir: abs}
	if old := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); old != 0o700 {
		if err := os.Chmod(abs, 0o700); err != nil {
			return nil, fmt.Errorf("state: open %s: %w", dir, err)
		}
		s.repaired("%s was mode %04o, now 0700", abs, uint32(old.Perm()))
	}
	if err := s.fixModes(); err != nil {
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	// Leftovers of killed writes go now if no writer is at work (taking
	// the lock removes them), else when the lock is taken next. Where no
	// lock file is, or an empty one, no writer has been or every writer
	// unlocked (see Lock); a lock that cannot be taken is for the writer
	// that needs it to report.
	if fi, err := os.Lstat(filepath.Join(abs, lockName)); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		if unlock, err := s.TryLock(); err == nil {
			unlock()
		}
	}
	return s, nil
}

// Dir returns the store's folder as an absolute path.
func (s *Store) Dir() string { return s.dir }

// Path returns the file name of rel inside the store, for messages and for
// tools that need a path. It does not check rel; the other methods do.
func (s *Store) Path(rel string) string { return filepath.Join(s.dir, rel) }

// checkRel returns an error wrapping ErrInvalidPath unless rel is a clean,
// relative, non-empty path that stays inside the store.
func checkRel(rel string) error {
	if rel == "." || !filepath.IsLocal(rel) || filepath.Clean(rel) != rel {
		return fmt.Errorf("%w: %q is not a clean relative path inside the store", ErrInvalidPath, rel)
	}
	return nil
}

// checkUserRel is checkRel that also refuses the files the store manages.
func checkUserRel(rel string) error {
	if err := checkRel(rel); err != nil {
		return err
	}
	if rel == lockName || rel == auditName || rel == markName {
		return fmt.Errorf("%w: %s is managed by the store", ErrInvalidPath, rel)
	}
	return nil
}

// parents checks the store folder and every folder on the way to rel (which
// checkRel accepted): each must be a real folder, not a symlink. With create,
// missing folders are made with mode 0700. It returns the full path of rel.
func (s *Store) parents(rel string, create bool) (string, error) {
	if err := checkDir(s.dir, false); err != nil {
		return "", err
	}
	dir := s.dir
	if parent := filepath.Dir(rel); parent != "." {
		for _, name := range strings.Split(parent, string(filepath.Separator)) {
			dir = filepath.Join(dir, name)
			if err := checkDir(dir, create); err != nil {
				return "", err
			}
		}
	}
	return filepath.Join(s.dir, rel), nil
}

// checkDir checks that dir is a folder and not a symlink; with create, a
// missing dir is made with mode 0700.
func checkDir(dir string, create bool) error {
	fi, err := os.Lstat(dir)
	if create && errors.Is(err, fs.ErrNotExist) {
		if err = os.Mkdir(dir, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
			fi, err = os.Lstat(dir)
		}
		if err == nil && fi.IsDir() && fi.Mode().Perm() != 0o700 {
			err = os.Chmod(dir, 0o700)
		}
	}
	switch {
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s: %w", dir, ErrSymlink)
	case !fi.IsDir():
		return fmt.Errorf("%s: %w", dir, syscall.ENOTDIR)
	}
	return nil
}

// WriteFile atomically replaces the file rel inside the store with data and
// mode perm (see atomicfile.WriteFile), making missing parent folders with
// mode 0700. rel must be a clean relative path inside the store, and neither
// it nor any folder on the way to it may be a symlink.
func (s *Store) WriteFile(rel string, data []byte, perm os.FileMode) error {
	if err := checkUserRel(rel); err != nil {
		return fmt.Errorf("state: write %s: %w", rel, err)
	}
	return s.writeFile(rel, data, perm)
}

func (s *Store) writeFile(rel string, data []byte, perm os.FileMode) error {
	if s.dry != nil {
		s.dryWrite(rel, data)
		return nil
	}
	path, err := s.parents(rel, true)
	if err == nil {
		err = atomicfile.WriteFile(path, data, perm)
	}
	if err != nil {
		return fmt.Errorf("state: write %s: %w", rel, err)
	}
	return nil
}

// File is one file for WriteFiles: its path relative to the store, its
// content and its mode.
type File struct {
	Rel  string
	Data []byte
	Perm os.FileMode
}

// WriteFiles writes files as WriteFile does, syncing each folder once
// after the last file written into it (a certificate and its key: one
// folder sync less).
func (s *Store) WriteFiles(files ...File) error {
	var out []atomicfile.File
	for _, f := range files {
		if err := checkUserRel(f.Rel); err != nil {
			return fmt.Errorf("state: write %s: %w", f.Rel, err)
		}
		if s.dry != nil {
			s.dryWrite(f.Rel, f.Data)
			continue
		}
		path, err := s.parents(f.Rel, true)
		if err != nil {
			return fmt.Errorf("state: write %s: %w", f.Rel, err)
		}
		out = append(out, atomicfile.File{Path: path, Data: f.Data, Perm: f.Perm})
	}
	if err := atomicfile.WriteFiles(out...); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// ReadFile returns the content of the file rel inside the store. It refuses
// symlinks along the path and at the file. For a missing file the error
// satisfies errors.Is(err, os.ErrNotExist).
func (s *Store) ReadFile(rel string) ([]byte, error) {
	if err := checkRel(rel); err != nil {
		return nil, fmt.Errorf("state: read %s: %w", rel, err)
	}
	data, err := s.readFile(rel)
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", rel, err)
	}
	return data, nil
}

func (s *Store) readFile(rel string) ([]byte, error) {
	if s.dry != nil {
		if data, found, err := s.dryRead(rel); found {
			return data, err
		}
	}
	path, err := s.parents(rel, false)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s: %w", path, ErrSymlink)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if s.dry == nil {
		// Open does not look into leafFolders: their files are put
		// right when used.
		if err := s.fixMode(rel, fi); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(f)
}

// Exists reports whether rel exists inside the store. A symlink at rel or
// along the way to it is an error.
func (s *Store) Exists(rel string) (bool, error) {
	if err := checkRel(rel); err != nil {
		return false, fmt.Errorf("state: stat %s: %w", rel, err)
	}
	if s.dry != nil {
		if _, found, err := s.dryRead(rel); found {
			return err == nil, nil
		}
	}
	path, err := s.parents(rel, false)
	var fi fs.FileInfo
	if err == nil {
		fi, err = os.Lstat(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("state: stat %s: %w", rel, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, fmt.Errorf("state: stat %s: %w", rel, ErrSymlink)
	}
	return true, nil
}

// Remove removes the file (or empty folder) rel inside the store. Like
// os.Remove, a missing rel is an error satisfying errors.Is(err,
// os.ErrNotExist). Folders on the way to rel must not be symlinks.
func (s *Store) Remove(rel string) error {
	if err := checkUserRel(rel); err != nil {
		return fmt.Errorf("state: remove %s: %w", rel, err)
	}
	if s.dry != nil {
		if err := s.dryRemove(rel); err != nil {
			return fmt.Errorf("state: remove %s: %w", rel, err)
		}
		return nil
	}
	path, err := s.parents(rel, false)
	if err == nil {
		err = os.Remove(path)
	}
	if err != nil {
		return fmt.Errorf("state: remove %s: %w", rel, err)
	}
	return nil
}

// Package atomicfile replaces files atomically: a reader sees either the old
// content or the new one, never a mix, and a crash leaves one of the two on
// disk. It never follows a symlink at the target path.
package atomicfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// ErrSymlink is wrapped by the errors returned when the target path is a
// symlink.
var ErrSymlink = errors.New("refusing to follow a symlink")

// modeBits are the FileMode bits WriteFile can set.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// WriteFile atomically replaces path with data and mode perm.
//
// It writes a temporary file in the same directory (created exclusively,
// without following symlinks, and never with more permissions than perm),
// sets its mode to exactly perm regardless of the umask, syncs it, renames
// it over path and syncs the directory. If path is a symlink it returns an
// error wrapping ErrSymlink. On failure the temporary file is removed and the
// old file is left as it was.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileOwned(path, data, perm, -1, -1)
}

// WriteFileOwned is WriteFile that also gives the file the owner uid and
// group gid (-1 keeps the writer's) before it is renamed into place, so the
// file is never there with the wrong owner, not even briefly or after a
// failure. Changing the owner needs privilege; if it fails, nothing is
// replaced.
func WriteFileOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	if err := writeFile(path, data, perm, uid, gid); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	return nil
}

// TempPrefix and TempSuffix frame the names of the temporary files WriteFile
// makes beside its target; a process killed between writing and renaming
// leaves one behind.
const (
	TempPrefix = ".atomicfile-"
	TempSuffix = ".tmp"
)

// File is one file for WriteFiles.
type File struct {
	Path string
	Data []byte
	Perm os.FileMode
}

// WriteFiles atomically replaces each file as WriteFile does, one after
// the other, but syncs each folder once, after the last rename into it:
// when it returns, all of them are on disk. A failure leaves the files
// before the failing one replaced.
func WriteFiles(files ...File) error {
	var dirs []string
	for _, f := range files {
		if err := writeTemp(f.Path, f.Data, f.Perm, -1, -1); err != nil {
			return fmt.Errorf("atomicfile: write %s: %w", f.Path, err)
		}
		if dir := filepath.Dir(f.Path); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	for _, dir := range dirs {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("atomicfile: sync %s: %w", dir, err)
		}
	}
	return nil
}

func writeFile(path string, data []byte, perm os.FileMode, uid, gid int) error {
	if err := writeTemp(path, data, perm, uid, gid); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes and syncs a temporary file and renames it to path.
func writeTemp(path string, data []byte, perm os.FileMode, uid, gid int) (err error) {
	if perm&^modeBits != 0 {
		return fmt.Errorf("invalid mode %v", perm)
	}
	switch fi, err := os.Lstat(path); {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return ErrSymlink
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}

	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, TempPrefix+rand.Text()+TempSuffix)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm.Perm())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// The owner first: a change of owner clears the setuid and setgid
	// bits, which the mode then sets.
	if uid >= 0 || gid >= 0 {
		if err = f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Equal reports whether path is a regular file holding exactly data with mode
// exactly perm, so that a caller can skip a WriteFile that would change
// nothing. A missing file is not an error: Equal returns false. If path is a
// symlink it returns an error wrapping ErrSymlink.
func Equal(path string, data []byte, perm os.FileMode) (bool, error) {
	eq, err := equal(path, data, perm)
	if err != nil {
		return false, fmt.Errorf("atomicfile: compare %s: %w", path, err)
	}
	return eq, nil
}

func equal(path string, data []byte, perm os.FileMode) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, syscall.ELOOP):
		return false, ErrSymlink
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Mode() != perm || fi.Size() != int64(len(data)) {
		return false, nil
	}
	// Read one byte more than expected to notice a file that grew meanwhile.
	got, err := io.ReadAll(io.LimitReader(f, int64(len(data))+1))
	if err != nil {
		return false, err
	}
	return bytes.Equal(got, data), nil
}

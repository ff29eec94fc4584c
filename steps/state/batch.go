package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ReadFiles reads the files names (each one path element) inside the store
// folder dir as ReadFile would, but checks the folders on the way to dir
// once and opens each file relative to dir: what reading a node's 1,000
// peers' public keys needs. The result holds each file's content in the
// order of names, nil for a file that does not exist (an empty file is an
// empty, non-nil slice); a missing dir makes every file missing. A symlink
// at dir, on the way to it or at a file, or a file that is not a regular
// one, is an error, as for ReadFile. A dry-run store answers from what it
// holds in memory first.
func (s *Store) ReadFiles(dir string, names []string) ([][]byte, error) {
	out, _, err := s.ReadFilesStamps(dir, names)
	return out, err
}

// Stamp tells one version of a file apart from another: its inode, size
// and change time (which every write, chmod or rename sets and no program
// can set back). A file replaced or written to has another stamp, unless
// the change came within the file system's clock tick of the stamp taken:
// see Settled. The zero Stamp is no file's.
type Stamp struct {
	Ino   uint64
	Size  int64
	Ctime int64 // nanoseconds since 1970
}

// Settled tells whether the stamp's change time is a second or more before
// now: a later change to the file then gives it another stamp for sure,
// where one within the same clock tick might keep the change time.
func (st Stamp) Settled(now time.Time) bool {
	return st.Ino != 0 && st.Ctime <= now.Add(-time.Second).UnixNano()
}

func stampOf(st *syscall.Stat_t) Stamp {
	return Stamp{Ino: st.Ino, Size: st.Size, Ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec}
}

// ReadFilesStamps is ReadFiles that also returns the stamp of each file
// read, taken from the file as it was read: the zero Stamp for a missing
// file and for what a dry-run store holds in memory.
func (s *Store) ReadFilesStamps(dir string, names []string) ([][]byte, []Stamp, error) {
	out := make([][]byte, len(names))
	stamps := make([]Stamp, len(names))
	for _, name := range names {
		if err := checkRel(path.Join(dir, name)); err != nil || name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return nil, nil, fmt.Errorf("state: read %s/%s: %w: not one file of the folder", dir, name, ErrInvalidPath)
		}
	}
	if err := checkRel(dir); err != nil {
		return nil, nil, fmt.Errorf("state: read %s: %w", dir, err)
	}
	full, err := s.parents(path.Join(dir, "_"), false)
	if err == nil {
		err = checkDir(path.Dir(full), false)
	}
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return nil, nil, fmt.Errorf("state: read %s: %w", dir, err)
	}
	dfd := -1
	if !missing {
		dfd, err = syscall.Open(path.Dir(full), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, syscall.ELOOP):
			return nil, nil, fmt.Errorf("state: read %s: %s: %w", dir, path.Dir(full), ErrSymlink)
		case errors.Is(err, syscall.ENOENT):
			missing = true
		case err != nil:
			return nil, nil, fmt.Errorf("state: read %s: %w", dir, err)
		default:
			defer syscall.Close(dfd)
		}
	}
	for i, name := range names {
		rel := path.Join(dir, name)
		if s.dry != nil {
			if data, found, err := s.dryRead(rel); found {
				if err == nil {
					out[i] = data
				}
				continue
			}
		}
		if missing {
			continue
		}
		data, st, err := s.readAt(dfd, rel, name)
		if err != nil {
			return nil, nil, fmt.Errorf("state: read %s: %w", rel, err)
		}
		out[i], stamps[i] = data, st
	}
	return out, stamps, nil
}

// readAt reads the file name of the open folder dfd, rel inside the store:
// nil if it does not exist.
func (s *Store) readAt(dfd int, rel, name string) ([]byte, Stamp, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Openat(dfd, name, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	switch {
	case err == syscall.ENOENT:
		return nil, Stamp{}, nil
	case err == syscall.ELOOP:
		return nil, Stamp{}, fmt.Errorf("%s: %w", s.Path(rel), ErrSymlink)
	case err != nil:
		return nil, Stamp{}, &fs.PathError{Op: "open", Path: s.Path(rel), Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, Stamp{}, &fs.PathError{Op: "stat", Path: s.Path(rel), Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, Stamp{}, fmt.Errorf("%s is not a regular file", s.Path(rel))
	}
	if s.dry == nil {
		if err := s.fixMode(rel, regularInfo{name: name, mode: modeOf(st.Mode)}); err != nil {
			return nil, Stamp{}, err
		}
	}
	data := make([]byte, 0, st.Size+1)
	for {
		if len(data) == cap(data) {
			data = slices.Grow(data, 512)
		}
		want := cap(data) - len(data)
		n, err := syscall.Read(fd, data[len(data):cap(data)])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return nil, Stamp{}, &fs.PathError{Op: "read", Path: s.Path(rel), Err: err}
		}
		data = data[:len(data)+n]
		if n == 0 || n < want && int64(len(data)) >= st.Size {
			// At the end, or short past the size fstat gave: no read
			// more to be told so.
			return data, stampOf(&st), nil
		}
	}
}

// modeOf is the fs.FileMode of a regular file's st_mode.
func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// regularInfo is the fs.FileInfo fixMode needs of a regular file.
type regularInfo struct {
	name string
	mode fs.FileMode
}

func (r regularInfo) Name() string       { return r.name }
func (r regularInfo) Size() int64        { return 0 }
func (r regularInfo) Mode() fs.FileMode  { return r.mode }
func (r regularInfo) ModTime() time.Time { return time.Time{} }
func (r regularInfo) IsDir() bool        { return false }
func (r regularInfo) Sys() any           { return nil }

// Names lists the names in the store folder dir (files and folders), in
// no particular order: nil when dir does not exist. The folders on the way
// to dir are checked as for ReadFile, and dir must not be a symlink. A
// dry-run store adds the names of what it holds in memory under dir.
func (s *Store) Names(dir string) ([]string, error) {
	if err := checkRel(dir); err != nil {
		return nil, fmt.Errorf("state: list %s: %w", dir, err)
	}
	full, err := s.parents(path.Join(dir, "_"), false)
	if err == nil {
		err = checkDir(path.Dir(full), false)
	}
	var names []string
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("state: list %s: %w", dir, err)
	default:
		f, err := os.Open(path.Dir(full))
		if err == nil {
			names, err = f.Readdirnames(-1)
			f.Close()
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("state: list %s: %w", dir, err)
		}
	}
	if s.dry != nil {
		s.mu.Lock()
		for rel := range s.dry.files {
			if rest, ok := strings.CutPrefix(rel, dir+"/"); ok {
				name, _, _ := strings.Cut(rest, "/")
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
			}
		}
		s.mu.Unlock()
	}
	return names, nil
}

// Stamps returns the stamp of each file names of the store folder dir as
// it is now, without reading them: the zero Stamp for a missing file, and
// for a file a dry-run store holds in memory or removed. The folders on
// the way are checked as for ReadFiles; a symlink or a file that is not
// a regular one is an error.
func (s *Store) Stamps(dir string, names []string) ([]Stamp, error) {
	out := make([]Stamp, len(names))
	for _, name := range names {
		if err := checkRel(path.Join(dir, name)); err != nil || name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return nil, fmt.Errorf("state: stat %s/%s: %w: not one file of the folder", dir, name, ErrInvalidPath)
		}
	}
	if err := checkRel(dir); err != nil {
		return nil, fmt.Errorf("state: stat %s: %w", dir, err)
	}
	full, err := s.parents(path.Join(dir, "_"), false)
	if err == nil {
		err = checkDir(path.Dir(full), false)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("state: stat %s: %w", dir, err)
	}
	dfd, err := syscall.Open(path.Dir(full), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return out, nil
	case errors.Is(err, syscall.ELOOP):
		return nil, fmt.Errorf("state: stat %s: %s: %w", dir, path.Dir(full), ErrSymlink)
	case err != nil:
		return nil, fmt.Errorf("state: stat %s: %w", dir, err)
	}
	defer syscall.Close(dfd)
	for i, name := range names {
		rel := path.Join(dir, name)
		if s.dry != nil {
			if _, found, _ := s.dryRead(rel); found {
				continue
			}
		}
		var ust unix.Stat_t
		err := unix.Fstatat(dfd, name, &ust, unix.AT_SYMLINK_NOFOLLOW)
		st := syscall.Stat_t{Ino: ust.Ino, Size: ust.Size, Mode: ust.Mode, Ctim: syscall.Timespec{Sec: ust.Ctim.Sec, Nsec: ust.Ctim.Nsec}}
		switch {
		case err == unix.ENOENT:
			continue
		case err != nil:
			return nil, fmt.Errorf("state: stat %s: %w", rel, &fs.PathError{Op: "stat", Path: s.Path(rel), Err: err})
		case st.Mode&syscall.S_IFMT == syscall.S_IFLNK:
			return nil, fmt.Errorf("state: stat %s: %s: %w", rel, s.Path(rel), ErrSymlink)
		case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
			return nil, fmt.Errorf("state: stat %s: %s is not a regular file", rel, s.Path(rel))
		}
		out[i] = stampOf(&st)
	}
	return out, nil
}

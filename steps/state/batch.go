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
	out := make([][]byte, len(names))
	for _, name := range names {
		if err := checkRel(path.Join(dir, name)); err != nil || name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
			return nil, fmt.Errorf("state: read %s/%s: %w: not one file of the folder", dir, name, ErrInvalidPath)
		}
	}
	if err := checkRel(dir); err != nil {
		return nil, fmt.Errorf("state: read %s: %w", dir, err)
	}
	full, err := s.parents(path.Join(dir, "_"), false)
	if err == nil {
		err = checkDir(path.Dir(full), false)
	}
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return nil, fmt.Errorf("state: read %s: %w", dir, err)
	}
	dfd := -1
	if !missing {
		dfd, err = syscall.Open(path.Dir(full), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, syscall.ELOOP):
			return nil, fmt.Errorf("state: read %s: %s: %w", dir, path.Dir(full), ErrSymlink)
		case errors.Is(err, syscall.ENOENT):
			missing = true
		case err != nil:
			return nil, fmt.Errorf("state: read %s: %w", dir, err)
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
		data, err := s.readAt(dfd, rel, name)
		if err != nil {
			return nil, fmt.Errorf("state: read %s: %w", rel, err)
		}
		out[i] = data
	}
	return out, nil
}

// readAt reads the file name of the open folder dfd, rel inside the store:
// nil if it does not exist.
func (s *Store) readAt(dfd int, rel, name string) ([]byte, error) {
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
		return nil, nil
	case err == syscall.ELOOP:
		return nil, fmt.Errorf("%s: %w", s.Path(rel), ErrSymlink)
	case err != nil:
		return nil, &fs.PathError{Op: "open", Path: s.Path(rel), Err: err}
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: s.Path(rel), Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", s.Path(rel))
	}
	if s.dry == nil {
		if err := s.fixMode(rel, regularInfo{name: name, mode: modeOf(st.Mode)}); err != nil {
			return nil, err
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
			return nil, &fs.PathError{Op: "read", Path: s.Path(rel), Err: err}
		}
		data = data[:len(data)+n]
		if n == 0 || n < want && int64(len(data)) >= st.Size {
			// At the end, or short past the size fstat gave: no read
			// more to be told so.
			return data, nil
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

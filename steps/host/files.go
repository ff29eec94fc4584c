// Package host puts plans onto a machine: files into a root directory
// (the live host's "/" or an image's tree), and on a live Linux host the
// firewall, WireGuard and services.
package host

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
)

// WriteFiles writes files under root as they land under "/": atomically,
// with their modes, owned by their owner and group (given to the temporary
// file before it is renamed into place) when running as root,
// creating missing parent folders 0755 (private files are 0600 themselves).
// A file whose content, mode and owner already match is left alone, so
// writing the same plan twice changes nothing. It returns the paths written.
func WriteFiles(root string, files []steps.File) ([]string, error) {
	var written []string
	for _, f := range files {
		if !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path || strings.Contains(f.Path, "..") {
			return written, fmt.Errorf("host: refusing file path %q", f.Path)
		}
		dst := filepath.Join(root, f.Path)
		same, err := atomicfile.Equal(dst, f.Content, f.Mode)
		if err != nil {
			return written, fmt.Errorf("host: %w", err)
		}
		if same && ownedBy(dst, f) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return written, fmt.Errorf("host: %w", err)
		}
		uid, gid, err := owner(f)
		if err != nil {
			return written, err
		}
		if err := atomicfile.WriteFileOwned(dst, f.Content, f.Mode, uid, gid); err != nil {
			return written, fmt.Errorf("host: %w", err)
		}
		written = append(written, f.Path)
	}
	return written, nil
}

// ids resolves a file's owner and group; "" is root.
func ids(f steps.File) (uid, gid int, err error) {
	if f.Owner != "" {
		u, err := user.Lookup(f.Owner)
		if err != nil {
			return 0, 0, fmt.Errorf("host: %s: owner %q: %w", f.Path, f.Owner, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if f.Group != "" {
		g, err := user.LookupGroup(f.Group)
		if err != nil {
			return 0, 0, fmt.Errorf("host: %s: group %q: %w", f.Path, f.Group, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// owner is the uid and gid a file is written with: its owner's when
// running as root, -1 (the writer's) as another user, whose files stay
// that user's (a test root, a render folder).
func owner(f steps.File) (uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return -1, -1, nil
	}
	uid, gid, err = ids(f)
	if err != nil {
		var unknown user.UnknownUserError
		var unknownGroup user.UnknownGroupError
		if errors.As(err, &unknown) || errors.As(err, &unknownGroup) {
			// The account comes with its package (postgres): until it is
			// installed the file stays root's, and its mode keeps it closed.
			return 0, 0, nil
		}
		return 0, 0, err
	}
	return uid, gid, nil
}

// ownedBy tells whether path already has the file's owner (always true
// when not running as root).
func ownedBy(path string, f steps.File) bool {
	if os.Geteuid() != 0 {
		return true
	}
	uid, gid, err := ids(f)
	if err != nil {
		return true
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	return statOwner(fi, uid, gid)
}

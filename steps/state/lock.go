package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is matched (with errors.Is) by the *LockedError that Lock and
// TryLock return when another holder has the store's lock.
var ErrLocked = errors.New("state: locked")

// LockedError reports that the store is locked by another holder.
type LockedError struct {
	Dir string // the store's folder
	PID int    // the holder's process id, 0 if unknown
}

// Error names the folder and the process holding it.
func (e *LockedError) Error() string {
	pid := "unknown"
	if e.PID > 0 {
		pid = strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("state: %s is in use by another ztwizard (pid %s)", e.Dir, pid)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// lockPoll is how often Lock retries a held lock.
const lockPoll = 50 * time.Millisecond

// Lock takes the store's exclusive lock: a flock on the file "lock" in the
// store (mode 0600), which then holds the holder's pid. If the lock is held it
// retries every 50ms until ctx is done, then returns a *LockedError (matching
// ErrLocked) naming the holder's pid.
//
// Callers must hold the lock around every read-modify-write of the store,
// in particular Index followed by SaveIndex. The lock is not reentrant: a
// second Lock in the same process waits like any other. unlock releases it
// and may be called more than once. The kernel releases the lock if the
// process dies.
//
// Once it holds the lock, Lock removes the temporary files that writes cut
// short left in the store, listing each in Repairs. Every writer holds the
// lock, and its pid stays in the lock file until it unlocks: so the store is
// searched for them only when the last holder died holding it (kill -9, a
// crash), not on every Lock.
func (s *Store) Lock(ctx context.Context) (unlock func(), err error) {
	return s.lock(ctx, true)
}

// TryLock is Lock without waiting: if the lock is held it returns a
// *LockedError at once.
func (s *Store) TryLock() (unlock func(), err error) {
	return s.lock(context.Background(), false)
}

func (s *Store) lock(ctx context.Context, wait bool) (func(), error) {
	if s.dry != nil {
		if _, err := os.Lstat(s.dir); errors.Is(err, fs.ErrNotExist) {
			return func() {}, nil
		}
	}
	if err := checkDir(s.dir, false); err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", s.dir, err)
	}
	path := filepath.Join(s.dir, lockName)
	flags := os.O_RDWR | os.O_CREATE | syscall.O_NOFOLLOW
	if s.dry != nil {
		// A dry run waits for a writer that holds the lock, but makes
		// no lock file where there is none.
		flags &^= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if s.dry != nil && errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if errors.Is(err, syscall.ELOOP) {
		err = ErrSymlink
	}
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", path, err)
	}
	var ticker *time.Ticker
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err == syscall.EINTR {
			continue
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("state: lock %s: %w", path, err)
		}
		if wait {
			if ticker == nil {
				ticker = time.NewTicker(lockPoll)
				defer ticker.Stop()
			}
			select {
			case <-ticker.C:
				continue
			case <-ctx.Done():
			}
		}
		pid := holder(f)
		f.Close()
		return nil, &LockedError{Dir: s.dir, PID: pid}
	}

	if s.dry != nil {
		var once sync.Once
		return func() { once.Do(func() { f.Close() }) }, nil
	}
	// A pid left in the lock file is a holder that died without
	// unlocking: only then can a write have been cut short.
	dirty := holder(f) != 0
	// Record who holds the lock; the mode is set exactly for a file made
	// under a strict umask.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if err == nil && fi.Size() != 0 {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err == nil {
		// Durable before the first write, so that a power cut leaves it
		// as a kill does.
		err = unix.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state: lock %s: %w", path, err)
	}
	if dirty {
		err = s.removeLeftovers()
	}
	if err != nil {
		f.Truncate(0)
		f.Close()
		return nil, fmt.Errorf("state: lock %s: %w", path, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Truncate(0)
			f.Close()
		})
	}, nil
}

// holder reads the pid written by the lock's holder, 0 if there is none yet.
func holder(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0
	}
	return pid
}

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// entries lists the names in dir, so tests can check no temporary file is
// left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteFileModes(t *testing.T) {
	tests := []struct {
		name  string
		umask int
		old   os.FileMode // mode of an existing file, 0 for none
		perm  os.FileMode
	}{
		{"umask 0, new 0600", 0, 0, 0o600},
		{"umask 0, new 0644", 0, 0, 0o644},
		{"umask 0, replace 0666 with 0600", 0, 0o666, 0o600},
		{"umask 077, new 0600", 0o077, 0, 0o600},
		{"umask 077, new 0644", 0o077, 0, 0o644},
		{"umask 077, new 0755", 0o077, 0, 0o755},
		{"umask 077, replace 0600 with 0640", 0o077, 0o600, 0o640},
		{"umask 077, new 0400", 0o077, 0, 0o400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tt.old != 0 {
				if err := os.WriteFile(path, []byte("old"), 0); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.old); err != nil {
					t.Fatal(err)
				}
			}
			old := syscall.Umask(tt.umask)
			err := WriteFile(path, []byte("new"), tt.perm)
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.perm {
				t.Errorf("mode = %v, want %v", fi.Mode(), tt.perm)
			}
			if got := readString(t, path); got != "new" {
				t.Errorf("content = %q, want %q", got, "new")
			}
			if names := entries(t, dir); !slices.Equal(names, []string{"f"}) {
				t.Errorf("directory holds %v, want only f", names)
			}
		})
	}
}

func TestWriteFileRefusesSymlink(t *testing.T) {
	tests := []struct {
		name   string
		target string // symlink target, relative to the directory
		exists bool   // whether the target is an existing file
	}{
		{"to a file", "real", true},
		{"dangling", "missing", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.exists {
				if err := os.WriteFile(filepath.Join(dir, tt.target), []byte("secret"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			link := filepath.Join(dir, "link")
			if err := os.Symlink(tt.target, link); err != nil {
				t.Fatal(err)
			}
			before := entries(t, dir)

			err := WriteFile(link, []byte("attacker"), 0o644)
			if !errors.Is(err, ErrSymlink) {
				t.Fatalf("WriteFile through a symlink: err = %v, want ErrSymlink", err)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("link was replaced: %v, %v", fi, err)
			}
			if tt.exists {
				if got := readString(t, filepath.Join(dir, tt.target)); got != "secret" {
					t.Errorf("target content = %q, want untouched", got)
				}
			}
			if after := entries(t, dir); !slices.Equal(after, before) {
				t.Errorf("directory holds %v, want %v", after, before)
			}
		})
	}
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	t.Run("directory at the target path", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		inner := filepath.Join(path, "inner")
		if err := os.WriteFile(inner, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(path, []byte("new"), 0o600); err == nil {
			t.Fatal("WriteFile over a directory succeeded")
		}
		if got := readString(t, inner); got != "old" {
			t.Errorf("old content = %q, want %q", got, "old")
		}
		if names := entries(t, dir); !slices.Equal(names, []string{"f"}) {
			t.Errorf("directory holds %v, want only f", names)
		}
	})

	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		if err := WriteFile(path, []byte("new"), 0o600); err == nil {
			t.Fatal("WriteFile in a read-only directory succeeded")
		}
		if got := readString(t, path); got != "old" {
			t.Errorf("content = %q, want %q", got, "old")
		}
		if names := entries(t, dir); !slices.Equal(names, []string{"f"}) {
			t.Errorf("directory holds %v, want only f", names)
		}
	})

	t.Run("write fails on the file size limit", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "ATOMICFILE_HELPER_PATH="+path)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "helper: write failed as expected") {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		if got := readString(t, path); got != "old" {
			t.Errorf("content = %q, want %q", got, "old")
		}
		if names := entries(t, dir); !slices.Equal(names, []string{"f"}) {
			t.Errorf("directory holds %v, want only f", names)
		}
	})
}

// TestHelperProcess is the child of the file size limit test: with
// RLIMIT_FSIZE below the data size, the write of the temporary file fails
// with EFBIG and WriteFile must clean up after itself.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("ATOMICFILE_HELPER_PATH")
	if path == "" {
		t.Skip("only run as a child of TestWriteFileFailureKeepsOld")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = 16
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, make([]byte, 4096), 0o600)
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("WriteFile over the size limit: err = %v, want EFBIG", err)
	}
	fmt.Println("helper: write failed as expected")
}

func TestEqual(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := WriteFile(file, []byte("content"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("file", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		data    string
		perm    os.FileMode
		want    bool
		wantErr error
	}{
		{"same content and mode", "file", "content", 0o600, true, nil},
		{"different content, same length", "file", "CONTENT", 0o600, false, nil},
		{"shorter content", "file", "cont", 0o600, false, nil},
		{"longer content", "file", "content!", 0o600, false, nil},
		{"different mode", "file", "content", 0o644, false, nil},
		{"missing file", "missing", "content", 0o600, false, nil},
		{"directory", "dir", "", 0o600, false, nil},
		{"symlink", "link", "content", 0o600, false, ErrSymlink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Equal(filepath.Join(dir, tt.path), []byte(tt.data), tt.perm)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteFileRejectsBadMode(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "f"), nil, fs.ModeDir|0o700); err == nil {
		t.Fatal("WriteFile with a directory mode succeeded")
	}
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("directory holds %v, want nothing", names)
	}
}

// TestWriteFileOwned gives the file its owner and keeps a setuid mode, which
// a change of owner would otherwise clear.
func TestWriteFileOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to give a file another owner")
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := WriteFileOwned(path, []byte("x"), 0o640, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("owner %d:%d, want 65534:65534", st.Uid, st.Gid)
	}
	if err := WriteFileOwned(path, []byte("y"), 0o750|fs.ModeSetuid, 65534, -1); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(path); fi.Mode() != 0o750|fs.ModeSetuid {
		t.Errorf("mode %v, want setuid 0750", fi.Mode())
	}
}

// TestWriteFiles writes a key and its certificate into one folder and a
// file into another: each has its content and mode, an old file is
// replaced, no temporary file is left, and a symlink among them stops the
// writes at it.
func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.pem"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{filepath.Join(dir, "k.pem"), []byte("key"), 0o600},
		{filepath.Join(dir, "c.pem"), []byte("cert"), 0o644},
		{filepath.Join(sub, "x"), []byte("x"), 0o640},
	}
	if err := WriteFiles(files...); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fi, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(f.Path); string(got) != string(f.Data) || fi.Mode() != f.Perm {
			t.Errorf("%s: %q %v, want %q %v", f.Path, got, fi.Mode(), f.Data, f.Perm)
		}
	}
	for _, d := range []string{dir, sub} {
		if left, _ := filepath.Glob(filepath.Join(d, TempPrefix+"*")); len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "k.pem"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	err := WriteFiles(File{filepath.Join(dir, "link"), []byte("evil"), 0o600}, File{filepath.Join(dir, "after"), nil, 0o600})
	if !errors.Is(err, ErrSymlink) {
		t.Errorf("WriteFiles through a symlink: %v, want ErrSymlink", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "k.pem")); string(got) != "key" {
		t.Errorf("the symlink's target was written: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "after")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file after the refused one was written: %v", err)
	}
}

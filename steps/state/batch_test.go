package state

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestReadFiles reads a folder's files in one pass as ReadFile reads each:
// content, missing files as nil, an empty file as empty, modes put right,
// symlinks and non-files refused, a dry run's own writes first.
func TestReadFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile("wireguard/a.pub", []byte("A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile("wireguard/e.pub", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadFiles("wireguard", []string{"a.pub", "b.pub", "e.pub"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != "A\n" || got[1] != nil || got[2] == nil || len(got[2]) != 0 {
		t.Fatalf("ReadFiles = %q, want A, missing (nil), empty", got)
	}
	// A file changed on disk is read as it is now.
	if err := os.WriteFile(filepath.Join(dir, "wireguard/a.pub"), []byte("changed\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "wireguard/a.pub"), 0o666)
	if got, err = s.ReadFiles("wireguard", []string{"a.pub"}); err != nil || string(got[0]) != "changed\n" {
		t.Fatalf("after a change: %q, %v", got, err)
	}
	if m := mode(t, filepath.Join(dir, "wireguard/a.pub")); m != 0o644 {
		t.Fatalf("a public file that others could write is %v after its read, want 0644", m)
	}
	if got, err = s.ReadFiles("nothere", []string{"a.pub"}); err != nil || got[0] != nil {
		t.Fatalf("missing folder: %q, %v", got, err)
	}
	for _, bad := range [][2]string{{"wireguard", "../ca.pem"}, {"wireguard", ""}, {"/etc", "passwd"}, {"wireguard", "x/y"}} {
		if _, err := s.ReadFiles(bad[0], []string{bad[1]}); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("ReadFiles(%q, %q): %v, want ErrInvalidPath", bad[0], bad[1], err)
		}
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "wireguard/l.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadFiles("wireguard", []string{"a.pub", "l.pub"}); !errors.Is(err, ErrSymlink) {
		t.Fatalf("symlinked file: %v, want ErrSymlink", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "wireguard/d.pub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadFiles("wireguard", []string{"d.pub"}); err == nil {
		t.Fatal("a folder read as a file")
	}
	if err := os.Symlink(filepath.Join(dir, "wireguard"), filepath.Join(dir, "wg2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadFiles("wg2", []string{"a.pub"}); !errors.Is(err, ErrSymlink) {
		t.Fatalf("symlinked folder: %v, want ErrSymlink", err)
	}
	if _, err := s.Names("wg2"); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Names of a symlinked folder: %v, want ErrSymlink", err)
	}

	dry, err := OpenDryRun(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := dry.WriteFile("wireguard/b.pub", []byte("B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := dry.Remove("wireguard/e.pub"); err != nil {
		t.Fatal(err)
	}
	if err := dry.WriteFile("nodes/n1/request.json", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = dry.ReadFiles("wireguard", []string{"a.pub", "b.pub", "e.pub"})
	if err != nil || !bytes.Equal(got[0], []byte("changed\n")) || string(got[1]) != "B\n" || got[2] != nil {
		t.Fatalf("dry run ReadFiles = %q, %v; want the disk's a, the overlay's b, e removed", got, err)
	}
	names, err := dry.Names("nodes")
	if err != nil || !slices.Equal(names, []string{"n1"}) {
		t.Fatalf("dry run Names(nodes) = %q, %v, want [n1]", names, err)
	}
	if names, err := s.Names("nodes"); err != nil || names != nil {
		t.Fatalf("Names of a missing folder = %q, %v", names, err)
	}
	names, err = s.Names("wireguard")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"a.pub", "d.pub", "e.pub", "l.pub"}) {
		t.Fatalf("Names(wireguard) = %q, %v", names, err)
	}
}

// TestStamps: a file's stamp is the one ReadFilesStamps saw until the
// file is written to or replaced; missing files have the zero stamp, and
// symlinks are refused.
func TestStamps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile("wireguard/a.pub", []byte("A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, read, err := s.ReadFilesStamps("wireguard", []string{"a.pub", "b.pub"})
	if err != nil {
		t.Fatal(err)
	}
	now, err := s.Stamps("wireguard", []string{"a.pub", "b.pub"})
	if err != nil {
		t.Fatal(err)
	}
	if read[0] == (Stamp{}) || read[0] != now[0] || now[1] != (Stamp{}) || read[1] != (Stamp{}) {
		t.Fatalf("stamps read %+v, now %+v", read, now)
	}
	if read[0].Settled(time.Now()) || !read[0].Settled(time.Now().Add(2*time.Second)) {
		t.Fatal("a file written just now is settled, or one written two seconds ago is not")
	}
	time.Sleep(50 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "wireguard/a.pub"), []byte("B\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Stamps("wireguard", []string{"a.pub"})
	if after[0] == read[0] {
		t.Fatal("a file written in place kept its stamp")
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.WriteFile("wireguard/a.pub", []byte("C\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Stamps("wireguard", []string{"a.pub"}); again[0] == after[0] {
		t.Fatal("a file replaced kept its stamp")
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "wireguard/l.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stamps("wireguard", []string{"l.pub"}); !errors.Is(err, ErrSymlink) {
		t.Fatalf("symlink: %v, want ErrSymlink", err)
	}
	if st, err := s.Stamps("nothere", []string{"a.pub"}); err != nil || st[0] != (Stamp{}) {
		t.Fatalf("missing folder: %+v, %v", st, err)
	}
}

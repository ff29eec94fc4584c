package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// TestFilesApplyIdempotent writes a plan into a folder, then again: the
// second apply changes nothing, not even a modification time, and leaves
// no journal behind.
func TestFilesApplyIdempotent(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	root, jdir := t.TempDir(), filepath.Join(t.TempDir(), "journal")
	a := NewFiles(root, jdir)

	res := mustApply(t, a, web)
	if !res.Changed() || len(res.Files) != len(web.Files) || res.Firewall || res.WireGuard || len(res.Reloaded) != 0 {
		t.Fatalf("first apply: %+v, want every one of %d files and nothing else", res, len(web.Files))
	}
	for _, f := range web.Files {
		got, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil || string(got) != string(f.Content) {
			t.Fatalf("%s: %v, content differs from the plan", f.Path, err)
		}
		fi, _ := os.Stat(filepath.Join(root, f.Path))
		if fi.Mode().Perm() != f.Mode {
			t.Errorf("%s: mode %v, want %v", f.Path, fi.Mode().Perm(), f.Mode)
		}
	}
	if _, err := os.Stat(filepath.Join(jdir, "journal.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left after an apply without a confirm window: %v", err)
	}

	before, tree := testenv.Mtimes(t, root), testenv.TreeDump(t, root)
	time.Sleep(20 * time.Millisecond) // a rewrite would show in the mtimes
	res = mustApply(t, a, web)
	if res.Changed() || len(res.Files) != 0 {
		t.Fatalf("second apply changed %+v", res)
	}
	after := testenv.Mtimes(t, root)
	for p, m := range before {
		if !after[p].Equal(m) {
			t.Errorf("%s rewritten by the second apply (mtime %v -> %v)", p, m, after[p])
		}
	}
	if got := testenv.TreeDump(t, root); got != tree {
		t.Errorf("second apply changed the tree:\n%s", testenv.DiffLines(tree, got))
	}
	hist, _ := os.ReadDir(filepath.Join(jdir, "history"))
	if len(hist) != 1 {
		t.Errorf("history holds %d entries after one apply that changed something, want 1", len(hist))
	}
	if d, err := a.Diff(context.Background(), web); err != nil || d != "" {
		t.Errorf("Diff after apply: %q, %v; want nothing", d, err)
	}
}

// TestFilesStaleRemoved applies a site, then one without its service: the
// service's files go, and so do the folders ztwizard made for them alone,
// but not folders that were there before.
func TestFilesStaleRemoved(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	bare := pl.plan(noService(t), "web")
	root, jdir := t.TempDir(), filepath.Join(t.TempDir(), "journal")
	// The host had nginx's folders before ztwizard came.
	if err := os.MkdirAll(filepath.Join(root, "etc/nginx/conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := NewFiles(root, jdir)
	mustApply(t, a, web)

	fresh := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fresh, "etc/nginx/conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustApply(t, NewFiles(fresh, filepath.Join(t.TempDir(), "journal")), bare)

	res := mustApply(t, a, bare)
	var gone []string
	for _, f := range web.Files {
		if !slices.ContainsFunc(bare.Files, func(b steps.File) bool { return b.Path == f.Path }) {
			gone = append(gone, f.Path)
		}
	}
	for _, want := range []string{"/etc/nginx/conf.d/ztwizard-api.conf", "/etc/ztwizard/tls/api.key", steps.CACertPath} {
		if !slices.Contains(gone, want) {
			t.Fatalf("%s is not stale: the variant is wrong (stale: %v)", want, gone)
		}
	}
	for _, p := range gone {
		if !slices.Contains(res.Files, p) {
			t.Errorf("result does not list the removed %s: %v", p, res.Files)
		}
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale %s still there: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ztwizard/tls")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder ztwizard made for the service's key is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/nginx/conf.d")); err != nil {
		t.Errorf("nginx's own folder went with ztwizard's file: %v", err)
	}
	if got, want := testenv.TreeDump(t, root), testenv.TreeDump(t, fresh); got != want {
		t.Errorf("after the transition the tree differs from a fresh apply:\n%s", testenv.DiffLines(want, got))
	}
	m, err := a.journal().manifest()
	if err != nil || m == nil || len(m.Files) != len(bare.Files) || slices.Contains(m.Dirs, "/etc/ztwizard/tls") ||
		!slices.Contains(m.Dirs, "/etc/ztwizard") || slices.Contains(m.Dirs, "/etc/nginx/conf.d") {
		t.Errorf("manifest %+v, %v: want the %d files of the plan and the folders ztwizard made", m, err, len(bare.Files))
	}
}

// TestFilesRefusesSymlinkAndBadPath: a target that is a link, or a path
// that climbs out of the root, is refused before anything is written.
func TestFilesRefusesSymlinkAndBadPath(t *testing.T) {
	pl := newPlanner(t)
	db := pl.plan(steps.ExampleYAML, "db")
	root, jdir := t.TempDir(), filepath.Join(t.TempDir(), "journal")
	target := filepath.Join(root, steps.SiteFilePath)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, target); err != nil {
		t.Fatal(err)
	}
	before := testenv.TreeDump(t, root)
	_, err := NewFiles(root, jdir).Apply(context.Background(), db)
	if err == nil || !strings.Contains(err.Error(), "files") {
		t.Fatalf("apply over a symlink: %v, want a files error", err)
	}
	if got := testenv.TreeDump(t, root); got != before {
		t.Errorf("a refused apply changed the tree:\n%s", testenv.DiffLines(before, got))
	}
	if data, _ := os.ReadFile(outside); string(data) != "keep" {
		t.Errorf("the link's target was written: %q", data)
	}

	bad := *db
	bad.Files = append(slices.Clone(db.Files), steps.File{Path: "/etc/../../escape", Mode: 0o644, Content: []byte("x")})
	if _, err := WriteFiles(t.TempDir(), bad.Files[len(bad.Files)-1:]); err == nil || !strings.Contains(err.Error(), "refusing file path") {
		t.Errorf("WriteFiles with a climbing path: %v", err)
	}
}

// TestManifestReadsBareList: a manifest written as a bare list of files
// (before folders were recorded) still tells which files are stale.
func TestManifestReadsBareList(t *testing.T) {
	jdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(jdir, "manifest.json"), []byte(`["/etc/a", "/etc/b"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := journalStore{dir: jdir}.manifest()
	if err != nil || m == nil || !slices.Equal(m.Files, []string{"/etc/a", "/etc/b"}) || len(m.Dirs) != 0 {
		t.Fatalf("manifest: %+v, %v", m, err)
	}
	if err := (journalStore{dir: jdir}).saveManifest(&Manifest{Files: []string{"/etc/a"}, Dirs: []string{"/etc/z"}}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(jdir, "manifest.json"))
	var back Manifest
	if err := json.Unmarshal(data, &back); err != nil || back.Dirs[0] != "/etc/z" {
		t.Fatalf("saved manifest %s: %v", data, err)
	}
}

// TestFilesOwnedBeforeRename gives a file an owner the kernel refuses (in a
// user namespace where only root is mapped, chown to nobody fails): the
// failure must come before the new file is renamed into place, so the old
// file stays as it was and no root-owned new file is left at the path.
func TestFilesOwnedBeforeRename(t *testing.T) {
	if os.Getenv("ZTW_OWNED_HELPER") != "" {
		root := os.Getenv("ZTW_OWNED_HELPER")
		_, err := WriteFiles(root, []steps.File{{Path: "/etc/app.conf", Mode: 0o640, Owner: "nobody", Content: []byte("new\n")}})
		fmt.Printf("helper: %v\n", err)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: files get their owner only when written as root")
	}
	root := t.TempDir()
	dst := filepath.Join(root, "etc", "app.conf")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFilesOwnedBeforeRename$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ZTW_OWNED_HELPER="+root)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "helper: host: atomicfile: write") {
		t.Fatalf("helper: %v, want a failed write\n%s", err, out)
	}
	if got, _ := os.ReadFile(dst); string(got) != "old\n" {
		t.Errorf("after a failed chown the file holds %q, want the old content", got)
	}
	if names, _ := filepath.Glob(filepath.Join(root, "etc", ".*")); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

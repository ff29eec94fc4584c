package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps/testenv"
)

// errAny marks a table case that must fail without a particular sentinel.
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("no error, want %v", want)
	case want != nil && want != errAny && !errors.Is(err, want):
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, tmp string) string // returns the dir to open
		wantErr error
	}{
		{"creates missing parents", func(t *testing.T, tmp string) string {
			return filepath.Join(tmp, "a", "b", "state")
		}, nil},
		{"fixes 0755", func(t *testing.T, tmp string) string {
			dir := filepath.Join(tmp, "state")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil},
		{"fixes setgid 2770", func(t *testing.T, tmp string) string {
			dir := filepath.Join(tmp, "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o770|fs.ModeSetgid); err != nil {
				t.Fatal(err)
			}
			return dir
		}, nil},
		{"symlink to a folder", func(t *testing.T, tmp string) string {
			real := filepath.Join(tmp, "real")
			if err := os.Mkdir(real, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(real, 0o755); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(tmp, "state")
			if err := os.Symlink(real, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, ErrSymlink},
		{"dangling symlink", func(t *testing.T, tmp string) string {
			link := filepath.Join(tmp, "state")
			if err := os.Symlink(filepath.Join(tmp, "missing"), link); err != nil {
				t.Fatal(err)
			}
			return link
		}, ErrSymlink},
		{"regular file", func(t *testing.T, tmp string) string {
			file := filepath.Join(tmp, "state")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return file
		}, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			dir := tt.setup(t, tmp)
			s, err := Open(dir)
			checkErr(t, err, tt.wantErr)
			if err != nil {
				if tt.name == "symlink to a folder" {
					if m := mode(t, filepath.Join(tmp, "real")); m.Perm() != 0o755 {
						t.Errorf("symlink target mode changed to %v", m)
					}
				}
				return
			}
			if s.Dir() != dir {
				t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
			}
			if m := mode(t, dir); m != fs.ModeDir|0o700 {
				t.Errorf("mode = %v, want drwx------", m)
			}
		})
	}
}

func TestOpenRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	s, err := Open("state")
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(s.Dir()) || filepath.Base(s.Dir()) != "state" {
		t.Errorf("Dir() = %q, want an absolute path ending in state", s.Dir())
	}
	if got, want := s.Path("ca/root.key"), filepath.Join(s.Dir(), "ca", "root.key"); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
}

func TestRefusedPaths(t *testing.T) {
	s := openStore(t)
	outside := t.TempDir()
	target := filepath.Join(outside, "target")
	if err := os.WriteFile(target, []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, s.Path("sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, s.Path("key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(s.Path("real"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, s.Path("real/sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		rel     string
		wantErr error
	}{
		{"../x", ErrInvalidPath},
		{"/abs", ErrInvalidPath},
		{"", ErrInvalidPath},
		{".", ErrInvalidPath},
		{"a/../b", ErrInvalidPath},
		{"a//b", ErrInvalidPath},
		{"./a", ErrInvalidPath},
		{"a/", ErrInvalidPath},
		{"sub/target", ErrSymlink},
		{"sub/new/x", ErrSymlink},
		{"real/sub/target", ErrSymlink},
		{"key", ErrSymlink},
		{"file/x", syscall.ENOTDIR},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			checkErr(t, s.WriteFile(tt.rel, []byte("attacker"), 0o600), tt.wantErr)
			_, err := s.ReadFile(tt.rel)
			checkErr(t, err, tt.wantErr)
			_, err = s.Exists(tt.rel)
			checkErr(t, err, tt.wantErr)
			if tt.rel != "key" { // removing a symlink itself follows nothing
				checkErr(t, s.Remove(tt.rel), tt.wantErr)
			}
		})
	}

	for _, rel := range []string{"lock", "audit.log"} {
		checkErr(t, s.WriteFile(rel, nil, 0o600), ErrInvalidPath)
		checkErr(t, s.Remove(rel), ErrInvalidPath)
	}

	des, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 {
		t.Errorf("outside folder holds %d entries, want only target", len(des))
	}
	if b, _ := os.ReadFile(target); string(b) != "outside" {
		t.Errorf("symlink target content = %q, want untouched", b)
	}
}

func TestFiles(t *testing.T) {
	tests := []struct {
		name  string
		umask int
		rel   string
		perm  fs.FileMode
	}{
		{"key at top, umask 0", 0, "wg.key", 0o600},
		{"key in new folder, umask 0", 0, "ca/root.key", 0o600},
		{"certificate in new folders, umask 077", 0o077, "certs/x509/alice.pem", 0o644},
		{"key in new folders, umask 0277", 0o277, "ssh/user_ca", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			old := syscall.Umask(tt.umask)
			err := s.WriteFile(tt.rel, []byte("secret"), tt.perm)
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			if m := mode(t, s.Path(tt.rel)); m != tt.perm {
				t.Errorf("file mode = %v, want %v", m, tt.perm)
			}
			for dir := filepath.Dir(tt.rel); dir != "."; dir = filepath.Dir(dir) {
				if m := mode(t, s.Path(dir)); m != fs.ModeDir|0o700 {
					t.Errorf("folder %s mode = %v, want drwx------", dir, m)
				}
			}
			got, err := s.ReadFile(tt.rel)
			if err != nil || string(got) != "secret" {
				t.Fatalf("ReadFile = %q, %v", got, err)
			}
			if ok, err := s.Exists(tt.rel); !ok || err != nil {
				t.Fatalf("Exists = %v, %v, want true", ok, err)
			}
			if err := s.WriteFile(tt.rel, []byte("rotated"), tt.perm); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.ReadFile(tt.rel); string(got) != "rotated" {
				t.Errorf("after overwrite ReadFile = %q", got)
			}
			if err := s.Remove(tt.rel); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.Exists(tt.rel); ok || err != nil {
				t.Errorf("after Remove Exists = %v, %v, want false", ok, err)
			}
		})
	}
}

func TestMissing(t *testing.T) {
	s := openStore(t)
	for _, rel := range []string{"missing", "missing/dir/file"} {
		if _, err := s.ReadFile(rel); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("ReadFile(%q): err = %v, want os.ErrNotExist", rel, err)
		}
		if ok, err := s.Exists(rel); ok || err != nil {
			t.Errorf("Exists(%q) = %v, %v, want false", rel, ok, err)
		}
		if err := s.Remove(rel); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Remove(%q): err = %v, want os.ErrNotExist", rel, err)
		}
	}
	if _, err := os.Lstat(s.Path("missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reading created a folder: %v", err)
	}
}

func TestAudit(t *testing.T) {
	s := openStore(t)
	if events, err := s.AuditLog(); err != nil || len(events) != 0 {
		t.Fatalf("empty AuditLog = %v, %v", events, err)
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	want := []Event{
		{Time: t0, Action: "create", Kind: "x509-ca", Name: "site"},
		{Time: t0.Add(time.Second), Action: "issue", Kind: "x509-client", Name: "alice",
			Serial: "0a1b2c", NotAfter: t0.AddDate(0, 0, 90), Detail: "line\nbreak \"quoted\""},
		{Time: t0.Add(2 * time.Second), Action: "revoke", Kind: "x509-client", Name: "alice", Serial: "0a1b2c"},
	}
	var prev []byte
	for i, ev := range want {
		old := syscall.Umask(0o277) // the log's mode must not depend on the umask
		err := s.Audit(ev)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := os.ReadFile(s.Path("audit.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(cur, prev) || len(cur) <= len(prev) {
			t.Fatalf("after event %d the log does not extend the previous content", i)
		}
		added := cur[len(prev):]
		if bytes.Count(added, []byte("\n")) != 1 || added[len(added)-1] != '\n' {
			t.Errorf("event %d added %q, want one line", i, added)
		}
		if ev.NotAfter.IsZero() && bytes.Contains(added, []byte("valid_until")) {
			t.Errorf("event %d has a zero valid_until: %s", i, added)
		}
		prev = cur
		if m := mode(t, s.Path("audit.log")); m != 0o600 {
			t.Errorf("audit.log mode = %v, want 0600", m)
		}
	}
	got, err := s.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("AuditLog =\n%+v\nwant\n%+v", got, want)
	}

	before := time.Now()
	if err := s.Audit(Event{Action: "apply", Kind: "wireguard", Name: "mesh"}); err != nil {
		t.Fatal(err)
	}
	got, err = s.AuditLog()
	if err != nil || len(got) != 4 {
		t.Fatalf("AuditLog = %v, %v, want 4 events", got, err)
	}
	if got[3].Time.Before(before.Add(-time.Second)) {
		t.Errorf("zero Time was set to %v, want about now", got[3].Time)
	}
}

func TestAuditRefusesSymlink(t *testing.T) {
	s := openStore(t)
	target := filepath.Join(t.TempDir(), "target")
	if err := os.Symlink(target, s.Path("audit.log")); err != nil {
		t.Fatal(err)
	}
	checkErr(t, s.Audit(Event{Action: "create", Kind: "x509-ca", Name: "site"}), ErrSymlink)
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("symlink target was created: %v", err)
	}
	_, err := s.AuditLog()
	checkErr(t, err, ErrSymlink)
}

func TestIndex(t *testing.T) {
	s := openStore(t)
	ix, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if len(ix.Records) != 0 || ix.NextSSHSerial != 1 || ix.CRLNumber != 0 || ix.KRLVersion != 0 {
		t.Fatalf("empty index = %+v", ix)
	}

	t1 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.AddDate(0, 1, 0)
	ix.Records = []Record{
		{Kind: "x509-client", Name: "alice", Serial: "ff01", Subject: "CN=alice", NotBefore: t2, NotAfter: t2.AddDate(0, 0, 90), File: "certs/alice-ff01.pem"},
		{Kind: "ssh-user", Name: "alice", Serial: "1", Principals: []string{"alice", "admin"}, NotBefore: t1, NotAfter: t1.Add(16 * time.Hour)},
		{Kind: "x509-client", Name: "alice", Serial: "0a1b", Subject: "CN=alice", NotBefore: t1, NotAfter: t1.AddDate(0, 0, 90)},
	}
	ix.NextSSHSerial = 2
	ix.CRLNumber = 7
	ix.KRLVersion = 3
	if err := s.SaveIndex(ix); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, s.Path("index.json")); m != 0o600 {
		t.Errorf("index.json mode = %v, want 0600", m)
	}
	got, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ix) {
		t.Errorf("Index =\n%+v\nwant\n%+v", got, ix)
	}

	found := got.Find("x509-client", "alice")
	if len(found) != 2 || found[0].Serial != "0a1b" || found[1].Serial != "ff01" {
		t.Errorf("Find = %+v, want 0a1b then ff01", found)
	}
	if found := got.Find("x509-client", "bob"); len(found) != 0 {
		t.Errorf("Find(bob) = %+v, want none", found)
	}

	r, ok := got.BySerial("ff01")
	if !ok || r.Name != "alice" || r.Kind != "x509-client" {
		t.Fatalf("BySerial = %+v, %v", r, ok)
	}
	revoked := t2.Add(time.Hour)
	r.RevokedAt = &revoked
	if err := s.SaveIndex(got); err != nil {
		t.Fatal(err)
	}
	again, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := again.BySerial("ff01"); r.RevokedAt == nil || !r.RevokedAt.Equal(revoked) {
		t.Errorf("revocation not saved: %+v", r)
	}
	if _, ok := again.BySerial("nope"); ok {
		t.Error("BySerial found a serial that was never issued")
	}
}

func TestIndexFile(t *testing.T) {
	s := openStore(t)
	if err := s.SaveIndex(&Index{NextSSHSerial: 1}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(s.Path("index.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The index on its first line, then its counters.
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"); len(lines) != 2 {
		t.Errorf("index.json has %d lines, want 2", len(lines))
	}
	if recs, ok := m["records"].([]any); !ok || len(recs) != 0 {
		t.Errorf("records = %v, want an empty list", m["records"])
	}

	if err := os.WriteFile(s.Path("index.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Index(); err == nil || !strings.Contains(err.Error(), "index.json") {
		t.Errorf("corrupt index: err = %v, want an error naming index.json", err)
	}
}

// TestIndexBehindMark saves an index with counters and revocations, then
// puts back an index that is behind it in each way an admin or a restore
// can: every read and save of it is refused with a clear error, also when
// counters.json is gone too (the audit log holds the history).
func TestIndexBehindMark(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	build := func(t *testing.T) (s *Store, older []byte) {
		s = openStore(t)
		ix := &Index{NextSSHSerial: 1}
		ix.Records = append(ix.Records, Record{Kind: "x509-client", Name: "a", Serial: "ff01", NotBefore: t1, NotAfter: t1.Add(time.Hour)})
		ix.CRLNumber = 1
		if err := s.SaveIndex(ix); err != nil {
			t.Fatal(err)
		}
		older, err := os.ReadFile(s.Path("index.json"))
		if err != nil {
			t.Fatal(err)
		}
		ix.Records[0].RevokedAt = &t1
		ix.Records = append(ix.Records, Record{Kind: "ssh-user", Name: "a", Serial: "1", NotBefore: t1, NotAfter: t1.Add(time.Hour)})
		ix.NextSSHSerial, ix.CRLNumber, ix.KRLVersion = 2, 2, 1
		for _, ev := range []Event{{Action: "revoke", Kind: "x509-client", Name: "a", Serial: "ff01"},
			{Action: "publish", Kind: "crl", Serial: "2"}, {Action: "sign", Kind: "ssh-user", Name: "a", Serial: "1"},
			{Action: "publish", Kind: "krl", Serial: "1"}} {
			if err := s.Audit(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SaveIndex(ix); err != nil {
			t.Fatal(err)
		}
		return s, older
	}
	tests := []struct {
		name    string
		index   string // "-" removes it, "older" puts the older copy back
		noMark  bool
		wantMsg string
	}{
		{"emptied", "", false, "CRL number 0, but CRL 2 was published"},
		{"{}", "{}", false, "next SSH serial 1, but serial 1 was used"},
		{"null", "null", false, "0 certificate record(s), but 2 were recorded"},
		{"removed", "-", false, "KRL version 0, but KRL 1 was published"},
		{"older copy", "older", false, "1 revocation(s) missing (x509-client ff01)"},
		{"older copy, counters.json removed", "older", true, "1 revocation(s) missing (x509-client ff01)"},
		{"{}, counters.json removed", "{}", true, "CRL number 0, but CRL 2 was published"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, older := build(t)
			path := s.Path("index.json")
			var err error
			switch tt.index {
			case "-":
				err = os.Remove(path)
			case "older":
				err = os.WriteFile(path, older, 0o600)
			default:
				err = os.WriteFile(path, []byte(tt.index), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.noMark {
				if err := os.Remove(s.Path("counters.json")); err != nil {
					t.Fatal(err)
				}
			}
			_, err = s.Index()
			if !errors.Is(err, ErrIndexBehind) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Index: %v, want ErrIndexBehind saying %q", err, tt.wantMsg)
			}
			if err := s.SaveIndex(&Index{NextSSHSerial: 1}); !errors.Is(err, ErrIndexBehind) {
				t.Fatalf("SaveIndex of an empty index: %v, want ErrIndexBehind", err)
			}
		})
	}
	// The store's own file is not the caller's to write.
	s := openStore(t)
	if err := s.WriteFile("counters.json", []byte("{}"), 0o600); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("WriteFile(counters.json): %v, want ErrInvalidPath", err)
	}
}

// TestOpenDryRun works on a store that is not there, then on one that is:
// reads see the writes, removals and audit records made before them, and
// nothing reaches the folder.
func TestOpenDryRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	for round := range 2 {
		s, err := OpenDryRun(dir)
		if err != nil {
			t.Fatal(err)
		}
		var before string
		if round == 1 {
			before = testenv.TreeDump(t, dir)
		}
		unlock, err := s.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteFile("ca/key.pem", []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if data, err := s.ReadFile("ca/key.pem"); err != nil || string(data) != "k" {
			t.Errorf("read back %q, %v", data, err)
		}
		if err := s.SaveIndex(&Index{CRLNumber: 3}); err != nil {
			t.Fatal(err)
		}
		if ix, err := s.Index(); err != nil || ix.CRLNumber != 3 {
			t.Errorf("index %+v, %v", ix, err)
		}
		if err := s.Audit(Event{Action: "create"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove("ca/key.pem"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Exists("ca/key.pem"); ok || err != nil {
			t.Errorf("removed file exists: %v %v", ok, err)
		}
		unlock()
		changes, events := s.Pending()
		want := []Change{{"index.json", "create"}, {"counters.json", "create"}}
		if round == 1 {
			want = []Change{{"index.json", "update"}, {"counters.json", "update"}}
		}
		if !reflect.DeepEqual(changes, want) || len(events) != 1 {
			t.Errorf("pending %+v %+v, want %+v and one event", changes, events, want)
		}
		if round == 0 {
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Fatalf("a dry run made the folder: %v", err)
			}
			real, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := real.SaveIndex(&Index{}); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(real.Path("lock"), nil, 0o600)
		} else if got := testenv.TreeDump(t, dir); got != before {
			t.Errorf("a dry run changed the folder:\n%s", testenv.DiffLines(before, got))
		}
	}
}

// TestKilledWriteLeftoverRemoved kills (SIGKILL) a process while it writes
// a file into the store, after its temporary file is made and before the
// rename: the temporary file stays behind, and the next Lock of the store
// removes it and says so.
func TestKilledWriteLeftoverRemoved(t *testing.T) {
	if dir := os.Getenv("ZTW_KILLED_STORE"); dir != "" {
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		// A writer holds the lock, as every writer of the store does.
		if _, err := s.Lock(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Big enough that writing and syncing it takes a while.
		s.WriteFile("ca/ca-key.pem", bytes.Repeat([]byte("-----BEGIN PRIVATE KEY-----\n"), 1<<20), 0o600)
		return
	}
	s := openStore(t)
	tmpDir := s.Path("ca")
	if err := os.Mkdir(tmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var left []string
	for try := 0; try < 5 && len(left) == 0; try++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriteLeftoverRemoved$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ZTW_KILLED_STORE="+s.Dir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if left, _ = filepath.Glob(filepath.Join(tmpDir, ".atomicfile-*.tmp")); len(left) > 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		if _, err := os.Stat(s.Path("ca/ca-key.pem")); err == nil {
			// The write won the race: it reached its rename.
			os.Remove(s.Path("ca/ca-key.pem"))
			left = nil
		}
		if left, _ = filepath.Glob(filepath.Join(tmpDir, ".atomicfile-*.tmp")); len(left) == 0 {
			continue
		}
	}
	if len(left) != 1 {
		t.Fatalf("no process was killed between its temporary write and its rename: %v", left)
	}
	again, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := again.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if names, _ := os.ReadDir(tmpDir); len(names) != 0 {
		t.Errorf("ca/ holds %v after the lock", names)
	}
	rel, _ := filepath.Rel(s.Dir(), left[0])
	if r := again.Repairs(); len(r) != 1 || !strings.Contains(r[0], "removed "+rel) {
		t.Errorf("Repairs() = %q, want the removal of %s", r, rel)
	}
}

// TestAuditBatch: events given together are appended in order with one
// write and one sync.
func TestAuditBatch(t *testing.T) {
	s := openStore(t)
	if err := s.Audit(Event{Action: "create", Kind: "x509-ca", Name: "site"}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.Path("audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	syncs := 0
	orig := syncAppended
	syncAppended = func(f *os.File) error { syncs++; return orig(f) }
	t.Cleanup(func() { syncAppended = orig })
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var batch []Event
	for i := range 1000 {
		batch = append(batch, Event{Time: t0, Action: "revoke", Kind: "x509-client", Name: "alice", Serial: fmt.Sprintf("%x", i+1)})
	}
	if err := s.Audit(batch...); err != nil {
		t.Fatal(err)
	}
	if syncs != 1 {
		t.Errorf("1,000 events took %d syncs, want 1", syncs)
	}
	after, err := os.ReadFile(s.Path("audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(after, before) {
		t.Fatal("the batch rewrote the log")
	}
	if n := bytes.Count(after[len(before):], []byte("\n")); n != 1000 {
		t.Errorf("the batch added %d lines, want 1000", n)
	}
	got, err := s.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[1:], batch) {
		t.Errorf("AuditLog after the batch: %d events, not the batch in order", len(got)-1)
	}
	if err := s.Audit(); err != nil || syncs != 1 {
		t.Errorf("an empty Audit: %v, %d syncs", err, syncs)
	}
}

package state

import (
	"bufio"
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
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sshRecord(serial uint64) Record {
	s := strconv.FormatUint(serial, 10)
	return Record{Kind: "ssh-user", Name: "u" + s, Serial: s, Principals: []string{"root"},
		NotBefore: t0, NotAfter: t0.Add(time.Hour), File: "ssh/certs/" + s + "-cert.pub"}
}

// TestAppendBigIndex appends to an index of 100,000 records, most of them
// appended lines as AddRecord writes them: the index reads back whole and
// in order, and an append reads only the last line (it works with the
// first line of the file made unreadable).
func TestAppendBigIndex(t *testing.T) {
	const snap, appended = 50_000, 50_000
	s := openStore(t)
	ix := &Index{NextSSHSerial: 1, CRLNumber: 3}
	for i := range snap {
		ix.Records = append(ix.Records, sshRecord(uint64(i+1)))
	}
	ix.NextSSHSerial = snap + 1
	if err := s.SaveIndex(ix); err != nil {
		t.Fatal(err)
	}
	// The appended lines as AddRecord and ReserveSSHSerial write them,
	// made here in one go (100,000 fdatasyncs would take minutes).
	f, err := os.OpenFile(s.Path("index.json"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := snap; i < snap+appended; i++ {
		n := i
		line, _ := json.Marshal(logLine{Records: &n, NextSSHSerial: uint64(i + 2), CRLNumber: 3})
		fmt.Fprintf(w, "%s\n", line)
		r := sshRecord(uint64(i + 1))
		ix.Records = append(ix.Records, r)
		n++
		line, _ = json.Marshal(logLine{Records: &n, NextSSHSerial: uint64(i + 2), CRLNumber: 3, Add: &r})
		fmt.Fprintf(w, "%s\n", line)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ix.NextSSHSerial = snap + appended + 1

	got, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ix) {
		t.Fatalf("index of %d records does not read back: %d records, next SSH serial %d", len(ix.Records), len(got.Records), got.NextSSHSerial)
	}

	// The appends read the last lines only: spoil the first line (the
	// snapshot of 50,000 records) and they still work.
	data, err := os.ReadFile(s.Path("index.json"))
	if err != nil {
		t.Fatal(err)
	}
	spoilt := bytes.Clone(data)
	spoilt[0] = 'X'
	if err := os.WriteFile(s.Path("index.json"), spoilt, 0o600); err != nil {
		t.Fatal(err)
	}
	serial, err := s.ReserveSSHSerial()
	if err != nil || serial != snap+appended+1 {
		t.Fatalf("ReserveSSHSerial = %d, %v, want %d", serial, err, snap+appended+1)
	}
	if err := s.AddRecord(sshRecord(serial)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Index(); err == nil {
		t.Fatal("the spoilt first line went unnoticed by Index")
	}
	now, err := os.ReadFile(s.Path("index.json"))
	if err != nil {
		t.Fatal(err)
	}
	now[0] = data[0]
	if err := os.WriteFile(s.Path("index.json"), now, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = s.Index()
	if err != nil {
		t.Fatal(err)
	}
	ix.Records = append(ix.Records, sshRecord(serial))
	ix.NextSSHSerial = serial + 1
	if !reflect.DeepEqual(got, ix) {
		t.Fatalf("after the appends: %d records, next SSH serial %d; want %d, %d", len(got.Records), got.NextSSHSerial, len(ix.Records), ix.NextSSHSerial)
	}
}

// TestTornTail leaves the last line of index.json and of counters.json cut
// short, as an append killed in its write does: readers ignore it, the next
// append cuts it off, and nothing before it is lost.
func TestTornTail(t *testing.T) {
	for _, file := range []string{"index.json", "counters.json", "both"} {
		t.Run(file, func(t *testing.T) {
			s := openStore(t)
			if err := s.SaveIndex(&Index{NextSSHSerial: 1}); err != nil {
				t.Fatal(err)
			}
			var want []Record
			for range 3 {
				n, err := s.ReserveSSHSerial()
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, sshRecord(n))
				if err := s.AddRecord(want[len(want)-1]); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"index.json", "counters.json"} {
				if file == f || file == "both" {
					fh, err := os.OpenFile(s.Path(f), os.O_APPEND|os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					fh.WriteString(`{"records":4,"next_ssh_serial":5,"crl_nu`)
					fh.Close()
				}
			}
			ix, err := s.Index()
			if err != nil {
				t.Fatalf("Index with a torn last line: %v", err)
			}
			if !reflect.DeepEqual(ix.Records, want) || ix.NextSSHSerial != 4 {
				t.Fatalf("Index = %d records, next %d; want %d, 4", len(ix.Records), ix.NextSSHSerial, len(want))
			}
			n, err := s.ReserveSSHSerial()
			if err != nil || n != 4 {
				t.Fatalf("ReserveSSHSerial after a torn line = %d, %v; want 4", n, err)
			}
			if err := s.AddRecord(sshRecord(n)); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"index.json", "counters.json"} {
				data, _ := os.ReadFile(s.Path(f))
				if bytes.Contains(data, []byte(`"crl_nu{`)) || !bytes.HasSuffix(data, []byte("\n")) {
					t.Errorf("%s keeps the torn line:\n%s", f, data)
				}
			}
			ix, err = s.Index()
			if err != nil {
				t.Fatal(err)
			}
			if want = append(want, sshRecord(4)); !reflect.DeepEqual(ix.Records, want) || ix.NextSSHSerial != 5 {
				t.Fatalf("after the append: %d records, next %d; want %d, 5", len(ix.Records), ix.NextSSHSerial, len(want))
			}
		})
	}
}

// TestAppendBehindMark puts back an older index.json after appends, or
// resets it: the appends refuse (no serial twice, no record lost), as Index
// does, and with counters.json gone too the audit log still tells.
func TestAppendBehindMark(t *testing.T) {
	for _, tt := range []struct {
		name   string
		noMark bool
	}{{"older copy", false}, {"older copy, counters.json removed", true}} {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			if err := s.SaveIndex(&Index{NextSSHSerial: 1}); err != nil {
				t.Fatal(err)
			}
			older, err := os.ReadFile(s.Path("index.json"))
			if err != nil {
				t.Fatal(err)
			}
			n, err := s.ReserveSSHSerial()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Audit(Event{Action: "sign", Kind: "ssh-user", Name: "u1", Serial: strconv.FormatUint(n, 10)}); err != nil {
				t.Fatal(err)
			}
			if err := s.AddRecord(sshRecord(n)); err != nil {
				t.Fatal(err)
			}
			current, _ := os.ReadFile(s.Path("index.json"))
			if err := os.WriteFile(s.Path("index.json"), older, 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.noMark {
				os.Remove(s.Path("counters.json"))
			}
			if _, err := s.ReserveSSHSerial(); !errors.Is(err, ErrIndexBehind) {
				t.Errorf("ReserveSSHSerial on an older index: %v, want ErrIndexBehind", err)
			}
			if err := s.AddRecord(sshRecord(9)); !errors.Is(err, ErrIndexBehind) {
				t.Errorf("AddRecord on an older index: %v, want ErrIndexBehind", err)
			}
			if got, _ := os.ReadFile(s.Path("index.json")); !bytes.Equal(got, older) {
				t.Errorf("a refused append changed index.json")
			}
			if err := os.WriteFile(s.Path("index.json"), current, 0o600); err != nil {
				t.Fatal(err)
			}
			if n, err := s.ReserveSSHSerial(); err != nil || n != 2 {
				t.Errorf("with the index put back: serial %d, %v; want 2", n, err)
			}
		})
	}
}

// TestKilledAppend kills (SIGKILL) a process at a random moment while it
// takes SSH serials and records them: every serial it was given is below
// the index's next serial, every record it was told is saved is in the
// index, no serial is recorded twice, and appending goes on.
func TestKilledAppend(t *testing.T) {
	if dir := os.Getenv("ZTW_APPEND_STORE"); dir != "" {
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lock(context.Background()); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := s.ReserveSSHSerial()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("serial %d\n", n)
			if err := s.AddRecord(sshRecord(n)); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("record %d\n", n)
		}
	}
	s := openStore(t)
	if err := s.SaveIndex(&Index{NextSSHSerial: 1}); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledAppend$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ZTW_APPEND_STORE="+s.Dir())
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for some appends, then kill it wherever it is; a child
		// that hangs is killed after a minute and fails the check below.
		stuck := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(out)
		var told []string
		for len(told) < 20+round*7 && sc.Scan() {
			told = append(told, sc.Text())
		}
		cmd.Process.Kill()
		for sc.Scan() {
			told = append(told, sc.Text())
		}
		cmd.Wait()
		stuck.Stop()
		if len(told) < 20 {
			t.Fatalf("round %d: the child printed only %q", round, told)
		}
		ix, err := s.Index()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		have := map[string]int{}
		for _, r := range ix.Records {
			have[r.Serial]++
			if have[r.Serial] > 1 {
				t.Errorf("round %d: serial %s recorded twice", round, r.Serial)
			}
		}
		for _, line := range told {
			what, num, _ := strings.Cut(line, " ")
			n, _ := strconv.ParseUint(num, 10, 64)
			if n >= ix.NextSSHSerial {
				t.Errorf("round %d: serial %d was given, but the index's next serial is %d", round, n, ix.NextSSHSerial)
			}
			if what == "record" && have[num] == 0 {
				t.Errorf("round %d: record %d was saved, but the index lacks it", round, n)
			}
		}
	}
	if n, err := s.ReserveSSHSerial(); err != nil || n == 0 {
		t.Fatalf("after the kills: %d, %v", n, err)
	}
}

// TestLeftoversOnlyAfterADeadHolder: Lock searches the store for the
// temporary files of cut-short writes only when the last holder of the lock
// died holding it (its pid is still in the lock file).
func TestLeftoversOnlyAfterADeadHolder(t *testing.T) {
	s := openStore(t)
	leftover := s.Path("ca/" + ".atomicfile-X.tmp")
	os.MkdirAll(filepath.Dir(leftover), 0o700)
	for _, lock := range []string{"", "12345\n"} {
		if err := os.WriteFile(leftover, []byte("key"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.Path("lock"), []byte(lock), 0o600); err != nil {
			t.Fatal(err)
		}
		unlock, err := s.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		_, err = os.Lstat(leftover)
		if gone := errors.Is(err, fs.ErrNotExist); gone != (lock != "") {
			t.Errorf("lock file %q: leftover removed %v, want %v", lock, gone, lock != "")
		}
		if data, _ := os.ReadFile(s.Path("lock")); len(data) != 0 {
			t.Errorf("unlock left %q in the lock file", data)
		}
	}
}

// TestLeafFoldersCheckedWhenUsed opens a store whose certificate folders
// someone opened up: Open closes the folders (which keeps everyone else out
// of the files in them) without listing their files, and a file in one is
// made 0600 when it is read.
func TestLeafFoldersCheckedWhenUsed(t *testing.T) {
	s := openStore(t)
	for _, rel := range []string{"x509/client/alice/ff-key.pem", "ssh/certs/1-cert.pub", "ca/ca-key.pem"} {
		if err := s.WriteFile(rel, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(s.Path(rel), 0o644)
	}
	os.Chmod(s.Path("x509/client/alice"), 0o755)
	again, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, s.Path("x509/client/alice")); m.Perm() != 0o700 {
		t.Errorf("x509/client/alice: %v, want 0700", m)
	}
	if m := mode(t, s.Path("ca/ca-key.pem")); m.Perm() != 0o600 {
		t.Errorf("ca/ca-key.pem: %v, want 0600 after Open", m)
	}
	if m := mode(t, s.Path("x509/client/alice/ff-key.pem")); m.Perm() != 0o644 {
		t.Errorf("x509/client/alice/ff-key.pem: %v: Open listed a certificate folder", m)
	}
	if _, err := again.ReadFile("x509/client/alice/ff-key.pem"); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, s.Path("x509/client/alice/ff-key.pem")); m.Perm() != 0o600 {
		t.Errorf("x509/client/alice/ff-key.pem: %v after reading it, want 0600", m)
	}
	if r := strings.Join(again.Repairs(), "\n"); !strings.Contains(r, "x509/client/alice/ff-key.pem was mode 0644, now 0600") {
		t.Errorf("Repairs() = %q", r)
	}
}

// TestAppendToOldFormat appends to a store whose index.json and
// counters.json are single indented JSON objects, as stores made before
// appends have them: the first append rewrites both, nothing is lost, and
// the next ones append.
func TestAppendToOldFormat(t *testing.T) {
	s := openStore(t)
	revoked := t0.Add(time.Minute)
	old := Index{Records: []Record{sshRecord(1), sshRecord(2)}, NextSSHSerial: 3, CRLNumber: 2, KRLVersion: 1}
	old.Records[0].RevokedAt = &revoked
	data, _ := json.MarshalIndent(old, "", "  ")
	if err := os.WriteFile(s.Path("index.json"), append(data, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	data, _ = json.MarshalIndent(map[string]any{"crl_number": 2, "krl_version": 1, "next_ssh_serial": 3, "records": 2,
		"revoked": []string{"ssh-user 1"}}, "", "  ")
	if err := os.WriteFile(s.Path("counters.json"), append(data, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	for want := uint64(3); want < 6; want++ {
		n, err := s.ReserveSSHSerial()
		if err != nil || n != want {
			t.Fatalf("ReserveSSHSerial = %d, %v; want %d", n, err, want)
		}
		if err := s.AddRecord(sshRecord(n)); err != nil {
			t.Fatal(err)
		}
		old.Records = append(old.Records, sshRecord(n))
	}
	old.NextSSHSerial = 6
	ix, err := s.Index()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*ix, old) {
		t.Errorf("Index = %+v\nwant %+v", ix, old)
	}
	lines := func(rel string) int {
		data, _ := os.ReadFile(s.Path(rel))
		return bytes.Count(data, []byte("\n"))
	}
	// The whole index, its counters, then five appended lines.
	if n := lines("index.json"); n != 7 {
		t.Errorf("index.json has %d lines, want 7", n)
	}
	m, err := s.readMark()
	if err != nil || m.NextSSHSerial != 6 || m.Records != 5 || !reflect.DeepEqual(m.Revoked, []string{"ssh-user 1"}) {
		t.Errorf("mark = %+v, %v", m, err)
	}
}

// TestMarkCompacted: after enough appends counters.json is written as one
// line again, keeping every revocation, and never grows much past the size
// that triggers it.
func TestMarkCompacted(t *testing.T) {
	s := openStore(t)
	revoked := t0.Add(time.Minute)
	ix := &Index{Records: []Record{sshRecord(1)}, NextSSHSerial: 2}
	ix.Records[0].RevokedAt = &revoked
	if err := s.SaveIndex(ix); err != nil {
		t.Fatal(err)
	}
	biggest := 0
	for range 1500 {
		if _, err := s.ReserveSSHSerial(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(s.Path("counters.json"))
		if err != nil {
			t.Fatal(err)
		}
		biggest = max(biggest, int(fi.Size()))
	}
	if biggest > 66_000 { // markCompactAt and one line
		t.Errorf("counters.json grew to %d bytes", biggest)
	}
	m, err := s.readMark()
	if err != nil || m.NextSSHSerial != 1502 || m.Records != 1 || !reflect.DeepEqual(m.Revoked, []string{"ssh-user 1"}) {
		t.Errorf("mark = %+v, %v; want next 1502, 1 record, ssh-user 1 revoked", m, err)
	}
	if _, err := s.Index(); err != nil {
		t.Fatal(err)
	}
}

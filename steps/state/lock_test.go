package state

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tests below run the test binary itself as the processes competing for
// the lock: TestHelperProcess does the child's part when STATE_HELPER is set.

const (
	raceWorkers    = 8
	raceIterations = 25
	raceFirstSSH   = 1000
)

// helper is a running child process.
type helper struct {
	cmd    *exec.Cmd
	stdin  *os.File // closing it tells a "hold" child to unlock and exit
	stdout *bufio.Reader
	stderr bytes.Buffer
	done   chan struct{} // closed when the child has exited; then err is set
	err    error
}

// startHelper runs TestHelperProcess in a child with env added. The child is
// killed when the test ends, if it is still running.
func startHelper(t *testing.T, env ...string) *helper {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{stdin: inW, stdout: bufio.NewReader(outR), done: make(chan struct{})}
	h.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	h.cmd.Env = append(os.Environ(), env...)
	h.cmd.Stdin, h.cmd.Stdout, h.cmd.Stderr = inR, outW, &h.stderr
	err = h.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatal(err)
	}
	go func() {
		h.err = h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-h.done
		inW.Close()
		outR.Close()
	})
	return h
}

// wait waits for the child to exit by itself and fails the test if it does
// not within d or exits with an error.
func (h *helper) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(d):
		t.Fatalf("child %d did not exit within %v", h.cmd.Process.Pid, d)
	}
	if h.err != nil {
		t.Fatalf("child %d: %v\n%s", h.cmd.Process.Pid, h.err, h.stderr.String())
	}
}

// TestHelperProcess is the child side of the lock tests.
//
//	STATE_HELPER=hold: take the lock, print "locked PID", hold it until stdin
//	closes, unlock and exit.
//	STATE_HELPER=race: STATE_WORKER=n does raceIterations locked updates of
//	the index and the audit log.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("STATE_HELPER")
	if mode == "" {
		t.Skip("only run as a child of the lock tests")
	}
	die := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// A child never outlives a stuck parent for long.
	time.AfterFunc(2*time.Minute, func() { die(errors.New("helper: timed out")) })

	s, err := Open(os.Getenv("STATE_DIR"))
	if err != nil {
		die(err)
	}
	switch mode {
	case "hold":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		unlock, err := s.Lock(ctx)
		cancel()
		if err != nil {
			die(err)
		}
		fmt.Printf("locked %d\n", os.Getpid())
		io.Copy(io.Discard, os.Stdin)
		unlock()
	case "race":
		worker := os.Getenv("STATE_WORKER")
		for i := range raceIterations {
			if err := raceStep(s, fmt.Sprintf("w%s-%d", worker, i), i%2 == 1); err != nil {
				die(err)
			}
		}
	default:
		die(fmt.Errorf("helper: unknown mode %q", mode))
	}
	os.Exit(0)
}

// raceStep is one locked change of the index: it issues an SSH serial to
// name and logs it. Every other step appends (ReserveSSHSerial, AddRecord)
// instead of reading and saving the whole index.
func raceStep(s *Store, name string, appends bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	unlock, err := s.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if appends {
		now := time.Now().UTC()
		n, err := s.ReserveSSHSerial()
		if err != nil {
			return err
		}
		serial := strconv.FormatUint(n, 10)
		if err := s.Audit(Event{Time: now, Action: "sign", Kind: "ssh-user", Name: name, Serial: serial}); err != nil {
			return err
		}
		return s.AddRecord(Record{Kind: "ssh-user", Name: name, Serial: serial, Principals: []string{name},
			NotBefore: now, NotAfter: now.Add(time.Hour)})
	}
	ix, err := s.Index()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	serial := strconv.FormatUint(ix.NextSSHSerial, 10)
	ix.Records = append(ix.Records, Record{
		Kind: "ssh-user", Name: name, Serial: serial, Principals: []string{name},
		NotBefore: now, NotAfter: now.Add(time.Hour),
	})
	ix.NextSSHSerial++
	if err := s.SaveIndex(ix); err != nil {
		return err
	}
	return s.Audit(Event{Time: now, Action: "sign", Kind: "ssh-user", Name: name, Serial: serial})
}

func TestLockInProcess(t *testing.T) {
	s := openStore(t)
	unlock, err := s.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, s.Path("lock")); m != 0o600 {
		t.Errorf("lock file mode = %v, want 0600", m)
	}
	if b, _ := os.ReadFile(s.Path("lock")); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want our pid %d", b, os.Getpid())
	}

	// The lock is per open file, so a second holder in the same process waits.
	_, err = s.TryLock()
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.PID != os.Getpid() {
		t.Fatalf("second TryLock: err = %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	unlock()
	unlock() // a second call does nothing

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	unlock, err = s.Lock(ctx) // a free lock is taken even with a done ctx
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

func TestLockRefusesSymlink(t *testing.T) {
	s := openStore(t)
	if err := os.Symlink(s.Path("elsewhere"), s.Path("lock")); err != nil {
		t.Fatal(err)
	}
	_, err := s.TryLock()
	checkErr(t, err, ErrSymlink)
}

func TestLockAcrossProcesses(t *testing.T) {
	tests := []struct {
		name    string
		release func(h *helper) // makes the child give the lock up
	}{
		{"child unlocks and exits", func(h *helper) { h.stdin.Close() }},
		{"child is killed", func(h *helper) { h.cmd.Process.Kill() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			h := startHelper(t, "STATE_HELPER=hold", "STATE_DIR="+s.Dir())
			line, err := h.stdout.ReadString('\n')
			if err != nil {
				<-h.done
				t.Fatalf("child did not lock: %v\n%s", err, h.stderr.String())
			}
			pid := h.cmd.Process.Pid
			if line != fmt.Sprintf("locked %d\n", pid) {
				t.Fatalf("child said %q, want it locked as pid %d", line, pid)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err = s.Lock(ctx)
			if waited := time.Since(start); waited < 150*time.Millisecond {
				t.Errorf("Lock gave up after %v, want it to wait for ctx", waited)
			}
			var le *LockedError
			if !errors.Is(err, ErrLocked) || !errors.As(err, &le) || le.PID != pid {
				t.Fatalf("Lock: err = %v, want ErrLocked naming pid %d", err, pid)
			}
			want := fmt.Sprintf("state: %s is in use by another ztwizard (pid %d)", s.Dir(), pid)
			if err.Error() != want {
				t.Errorf("error = %q, want %q", err, want)
			}
			if _, err := s.TryLock(); !errors.Is(err, ErrLocked) {
				t.Fatalf("TryLock: err = %v, want ErrLocked", err)
			}

			tt.release(h)
			select {
			case <-h.done:
			case <-time.After(10 * time.Second):
				t.Fatal("child did not exit")
			}
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			unlock, err := s.Lock(ctx)
			if err != nil {
				t.Fatalf("Lock after the child exited: %v", err)
			}
			unlock()
		})
	}
}

func TestLockRace(t *testing.T) {
	s := openStore(t)
	if err := s.SaveIndex(&Index{NextSSHSerial: raceFirstSSH}); err != nil {
		t.Fatal(err)
	}
	var helpers []*helper
	for w := range raceWorkers {
		helpers = append(helpers, startHelper(t, "STATE_HELPER=race", "STATE_DIR="+s.Dir(), fmt.Sprintf("STATE_WORKER=%d", w)))
	}
	for _, h := range helpers {
		h.wait(t, 90*time.Second)
	}

	const total = raceWorkers * raceIterations
	raw, err := os.ReadFile(s.Path("index.json"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := parseIndex(raw)
	if err != nil {
		t.Fatalf("index.json does not parse: %v", err)
	}
	if len(ix.Records) != total {
		t.Errorf("index has %d records, want %d", len(ix.Records), total)
	}
	if ix.NextSSHSerial != raceFirstSSH+total {
		t.Errorf("NextSSHSerial = %d, want %d", ix.NextSSHSerial, raceFirstSSH+total)
	}
	serials := map[string]bool{}
	names := map[string]bool{}
	for _, r := range ix.Records {
		if serials[r.Serial] {
			t.Errorf("serial %s issued twice", r.Serial)
		}
		serials[r.Serial] = true
		names[r.Name] = true
	}
	for w := range raceWorkers {
		for i := range raceIterations {
			if name := fmt.Sprintf("w%d-%d", w, i); !names[name] {
				t.Errorf("no record for %s", name)
			}
		}
	}

	log, err := os.ReadFile(s.Path("audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(log), "\n"), "\n")
	if len(lines) != total {
		t.Errorf("audit.log has %d lines, want %d", len(lines), total)
	}
	for i, line := range lines {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Action != "sign" || !serials[ev.Serial] {
			t.Errorf("audit.log line %d = %q (%v)", i+1, line, err)
		}
	}
	if events, err := s.AuditLog(); err != nil || len(events) != total {
		t.Errorf("AuditLog: %d events, %v; want %d", len(events), err, total)
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"ztwizard/steps/authority"
	"ztwizard/tui"
)

// ptyRun is the real binary on a pseudo-terminal of its own: standard
// input and output are the terminal, as when an admin runs it by hand.
type ptyRun struct {
	t    *testing.T
	cmd  *exec.Cmd
	f    *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	seen int // the output before this is matched already
	done chan error
	read chan struct{} // closed when the output is read to its end
}

// startPty starts ztwizard with args in dir on a 80x24 pseudo-terminal; it
// is killed when the test ends.
func startPty(t *testing.T, dir string, args ...string) *ptyRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TERM=xterm-256color", "ZTWIZARD_STATE=", "TZ=UTC")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	r := &ptyRun{t: t, cmd: cmd, f: f, done: make(chan error, 1), read: make(chan struct{})}
	go func() {
		defer close(r.read)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			r.mu.Lock()
			r.out.Write(buf[:n])
			r.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
		f.Close()
	})
	return r
}

// output is everything the program wrote so far.
func (r *ptyRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// expect waits, at most 10 seconds, until the output after the last match
// holds want.
func (r *ptyRun) expect(want string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := r.output()
		if i := strings.Index(out[r.seen:], want); i >= 0 {
			r.seen += i + len(want)
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the terminal never showed %q; it shows:\n%s", want, out[r.seen:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// line types s and Enter, as a terminal sends them.
func (r *ptyRun) line(s string) {
	r.t.Helper()
	if _, err := r.f.WriteString(s + "\r"); err != nil {
		r.t.Fatal(err)
	}
}

// exit waits, at most within, for the program to end; its exit code.
func (r *ptyRun) exit(within time.Duration) int {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		select {
		case <-r.read:
		case <-time.After(2 * time.Second):
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			r.t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		r.t.Fatalf("the program did not end within %s; it shows:\n%s", within, r.output()[r.seen:])
	}
	return -1
}

// TestWizardAccessiblePassphraseOnTerminal types the CA passphrase into the
// plain prompts on a real terminal: Enter ends it, it is not echoed, the
// next prompt is the CA's common name, and it is written nowhere.
func TestWizardAccessiblePassphraseOnTerminal(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "state")
	const secret = "correct-horse-42"
	all, err := os.ReadFile(filepath.Join("..", "..", "testdata", "wizard", "example-answers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	r := startPty(t, dir, "wizard", "--empty", "--accessible", "--state", st, "-c", "site.yaml")
	r.expect("Site name")
	r.line(lines[0])
	r.expect("State folder")
	r.line(lines[1])
	r.expect("CA passphrase")
	r.line(secret)
	r.expect("Again, to be sure")
	r.line(secret)
	r.expect("Common name")
	for _, l := range lines[2:] {
		r.line(l)
		time.Sleep(5 * time.Millisecond)
	}
	r.expect(`site "oslo-prod" is valid`)
	r.expect("encrypted with the passphrase")
	if code := r.exit(10 * time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.output())
	}
	if strings.Contains(r.output(), secret) {
		t.Fatalf("the passphrase was echoed:\n%s", r.output())
	}
	site, err := os.ReadFile(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(site, []byte("common_name: Internal Root CA")) {
		t.Fatalf("the common name is not the one typed:\n%s", site)
	}
	key, err := os.ReadFile(filepath.Join(st, authority.CAKeyFile))
	if err != nil || !bytes.Contains(key, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("the CA key is not encrypted: %v\n%.40s", err, key)
	}
	if r := ztw(t, dir, "-c", "site.yaml", "ca", "issue", "--name", "service-worker-01", "--out", filepath.Join(dir, "out"), "--state", st); r.code == 0 || !strings.Contains(r.stderr, "passphrase") {
		t.Fatalf("the CA opens without its passphrase: %+v", r)
	}
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if data, _ := os.ReadFile(path); bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds the passphrase", path)
			}
		}
		return nil
	})
}

// TestWizardAccessibleCtrlC presses ctrl+c in the plain prompts on a real
// terminal, at an answer and at the passphrase: the wizard ends at once,
// keeps the answers so far in the draft, and leaves the terminal's echo on.
func TestWizardAccessibleCtrlC(t *testing.T) {
	for _, at := range []string{"Common name", "CA passphrase"} {
		t.Run(at, func(t *testing.T) {
			dir := t.TempDir()
			st := filepath.Join(dir, "state")
			r := startPty(t, dir, "wizard", "--empty", "--accessible", "--state", st, "-c", "site.yaml")
			r.expect("Site name")
			r.line("half-way")
			r.expect("State folder")
			r.line("")
			r.expect("CA passphrase")
			if at == "Common name" {
				r.line("")
				r.expect("Common name")
			}
			time.Sleep(100 * time.Millisecond)
			start := time.Now()
			r.f.Write([]byte{3})
			r.exit(3 * time.Second)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("ctrl+c took %s", d)
			}
			if !strings.Contains(r.output(), "interrupted") {
				t.Fatalf("no word of the interruption:\n%s", r.output())
			}
			d, err := os.ReadFile(filepath.Join(st, tui.DraftFile(filepath.Join(dir, "site.yaml"))))
			if err != nil || !bytes.Contains(d, []byte("site: half-way")) {
				t.Fatalf("the draft lacks the answers: %v\n%s", err, d)
			}
			attrs, err := unix.IoctlGetTermios(int(r.f.Fd()), unix.TCGETS)
			if err != nil || attrs.Lflag&unix.ECHO == 0 {
				t.Fatalf("the terminal's echo is left off: %v", err)
			}
		})
	}
}

// TestErrorOnTerminalIsQuick fails a command on a real terminal: the
// reason shows at once, with no query to the terminal before it.
func TestErrorOnTerminalIsQuick(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	r := startPty(t, dir, "validate", "-c", "missing.yaml")
	r.expect("missing.yaml")
	if code := r.exit(5 * time.Second); code != 2 {
		t.Fatalf("exit %d", code)
	}
	// fang's query waited four seconds; a loaded machine may take one
	// or two to start the process.
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the error took %s", d)
	}
	if out := r.output(); strings.Contains(out, "\x1b]11;?") {
		t.Fatalf("the terminal was queried:\n%q", out)
	}
}

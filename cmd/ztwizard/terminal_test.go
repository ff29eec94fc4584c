package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Terminal queries: OSC 11 asks for the background colour, DA1 for the
// device attributes (the end of a query batch).
const (
	queryBackground = "\x1b]11;?"
	queryDA1        = "\x1b[c"
)

// onPTY runs the binary with stdin, stdout and stderr on a pseudo-terminal
// (but the stream pipe names, "stdout" or "stderr", on a pipe) and env
// added to the test's, and
// returns everything written to the terminal, its exit code and how long
// it ran. With answer the terminal answers the background-colour and DA1
// queries as a real one does; without, it never answers.
func onPTY(t *testing.T, env []string, answer bool, pipe string, args ...string) (out string, code int, took time.Duration) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "ZTWIZARD_STATE=", "NO_COLOR=", "TERM=xterm-256color")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	var piped bytes.Buffer
	switch pipe {
	case "stdout":
		cmd.Stdout = &piped
	case "stderr":
		cmd.Stderr = &piped
	}
	var mu sync.Mutex
	var got bytes.Buffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
			if answer && n > 0 {
				if strings.Contains(string(buf[:n]), queryBackground) {
					_, _ = ptmx.Write([]byte("\x1b]11;rgb:0000/0000/0000\x1b\\"))
				}
				if strings.Contains(string(buf[:n]), queryDA1) {
					_, _ = ptmx.Write([]byte("\x1b[?62;22c"))
				}
			}
			if err != nil {
				return
			}
		}
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	_ = cmd.Wait() // the exit code is what counts
	took = time.Since(start)
	code = cmd.ProcessState.ExitCode()
	if ctx.Err() != nil {
		t.Fatalf("%v: still running after 20 s", args)
	}
	// Every writer to the terminal is gone: read what is left.
	select {
	case <-read:
	case <-time.After(2 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	return got.String() + piped.String(), code, took
}

// TestNoTerminalQueriesWhenPlain runs --help and a bad command line on a
// terminal that never answers: with NO_COLOR, with TERM=dumb, and with
// stderr not a terminal, the binary asks the terminal nothing (it would
// wait about 4 s for the answer) and writes no escape sequence (no bold,
// no colour). On a terminal that answers and may show colour, it does ask:
// the check above can see a query.
func TestNoTerminalQueriesWhenPlain(t *testing.T) {
	runs := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "ztwizard turns one site file"},
		{[]string{"ca", "--help"}, 0, "certificate authority"},
		{[]string{"ca", "issue", "--nmae", "x"}, 2, "unknown flag: --nmae"},
	}
	for _, tt := range []struct {
		name string
		env  []string
		pipe string
	}{
		{"NO_COLOR", []string{"NO_COLOR=1"}, ""},
		{"TERM=dumb", []string{"TERM=dumb"}, ""},
		{"stderr not a terminal", nil, "stderr"},
		{"stdout not a terminal", nil, "stdout"},
	} {
		for _, r := range runs {
			t.Run(tt.name+"/"+strings.Join(r.args, " "), func(t *testing.T) {
				out, code, took := onPTY(t, tt.env, false, tt.pipe, r.args...)
				if code != r.code || !strings.Contains(out, r.want) {
					t.Errorf("exit %d, want %d with %q in:\n%s", code, r.code, r.want, out)
				}
				for _, q := range []string{queryBackground, queryDA1} {
					if strings.Contains(out, q) {
						t.Errorf("asked the terminal %q", q)
					}
				}
				if i := strings.IndexByte(out, 0x1b); i >= 0 {
					t.Errorf("an escape sequence (bold or colour) at byte %d: %q", i, out[i:min(len(out), i+12)])
				}
				// A terminal that does not answer costs 2 s per query,
				// 4 s in all.
				if took > 3*time.Second {
					t.Errorf("took %v", took)
				}
			})
		}
	}
	t.Run("styled terminal asks", func(t *testing.T) {
		out, code, _ := onPTY(t, nil, true, "", "--help")
		if code != 0 || !strings.Contains(out, queryBackground) {
			t.Errorf("on a colour terminal --help exited %d without asking for the background:\n%q", code, out)
		}
	})
}

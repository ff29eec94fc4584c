//go:build linux

package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeTB records what a helper reports instead of failing the test, so
// that the helpers' own failures can be checked. Only the methods below
// may be called; the embedded nil TB panics on any other.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	msgs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Logf(string, ...any)       {}
func (f *fakeTB) Cleanup(fn func())         { f.mu.Lock(); f.cleanups = append(f.cleanups, fn); f.mu.Unlock() }
func (f *fakeTB) Error(args ...any)         { f.Errorf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Fatal(args ...any)         { f.Error(args...); f.FailNow() }
func (f *fakeTB) Fatalf(s string, a ...any) { f.Errorf(s, a...); f.FailNow() }
func (f *fakeTB) FailNow()                  { runtime.Goexit() }

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// run calls fn on its own goroutine, as a test body: a Fatal ends it.
func (f *fakeTB) run(fn func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

// end runs the cleanups, last registered first, as the end of a test does.
func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.run(func(testing.TB) { f.cleanups[i]() })
	}
	f.cleanups = nil
}

func (f *fakeTB) report() string { return strings.Join(f.msgs, "\n") }

func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := len(b.String()); got != 400 {
		t.Errorf("%d bytes, want 400", got)
	}
}

func TestNeed(t *testing.T) {
	ok := &fakeTB{}
	ok.run(func(tb testing.TB) { Need(tb, "sh", "/bin/sh", "ip") })
	if ok.Failed() {
		t.Errorf("Need failed for tools that are there: %s", ok.report())
	}
	if p := Tool(t, "ip"); !strings.HasSuffix(p, "/ip") {
		t.Errorf("Tool(ip) = %q", p)
	}

	plain := WriteFile(t, t.TempDir(), "plain", []byte("#!/bin/sh\n"))
	missing := &fakeTB{}
	missing.run(func(tb testing.TB) {
		Need(tb, "sh", "zt-no-such-tool", "/usr/lib/postgresql/99/bin/initdb", plain)
		tb.Error("Need returned")
	})
	got := missing.report()
	for _, want := range []string{
		"zt-no-such-tool is required: not on PATH nor in /usr/sbin",
		"./scripts/deps.sh installs what the tests need",
		"/usr/lib/postgresql/99/bin/initdb is required",
		"apt-get install postgresql-99",
		plain + " is required: " + plain + ": not an executable file",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Need's failure lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Need returned") || strings.Contains(got, "sh is required") {
		t.Errorf("Need went on, or blamed sh:\n%s", got)
	}
	if install("sshd") != "apt-get install openssh-server, or ./scripts/deps.sh" {
		t.Errorf("install(sshd) = %q", install("sshd"))
	}
}

func TestRunCmd(t *testing.T) {
	ctx := context.Background()
	out, err := RunTimeout(ctx, CmdTimeout, "sh", "-c", "echo out; echo err >&2")
	if err != nil || out != "out\n" {
		t.Errorf("success: %q, %v", out, err)
	}

	_, err = RunTimeout(ctx, CmdTimeout, "sh", "-c", "echo why >&2; exit 3")
	if code, cerr := ExitCode(err); code != 3 || cerr != nil {
		t.Errorf("exit 3: ExitCode %d, %v", code, cerr)
	}
	if err == nil || !strings.Contains(err.Error(), "sh -c echo why >&2; exit 3: exit status 3\nwhy") {
		t.Errorf("exit 3: error %v, want the command, its status and its stderr", err)
	}

	start := time.Now()
	_, err = RunTimeout(ctx, 200*time.Millisecond, "sleep", "30")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Errorf("timeout: %v after %s, want a deadline error at once", err, time.Since(start))
	}
	if _, cerr := ExitCode(err); cerr == nil {
		t.Error("ExitCode took a killed program for one that exited")
	}
	if _, err := RunTimeout(ctx, CmdTimeout, "zt-no-such-tool"); err == nil {
		t.Error("a missing program ran")
	} else if _, cerr := ExitCode(err); cerr == nil {
		t.Error("ExitCode took a program that did not start for one that exited")
	}

	fail := &fakeTB{}
	fail.run(func(tb testing.TB) { MustRun(tb, "false"); tb.Error("MustRun returned") })
	if got := fail.report(); !strings.Contains(got, "false: exit status 1") || strings.Contains(got, "MustRun returned") {
		t.Errorf("MustRun of false: %s", got)
	}
}

func TestStartStop(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		stop         syscall.Signal
		wantErr      string // "" for a clean stop
	}{
		{"clean exit on SIGTERM", `trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done`, 0, ""},
		{"clean exit on SIGINT", `trap 'exit 0' INT; echo up; while :; do sleep 0.05; done`, syscall.SIGINT, ""},
		{"exit 1 on SIGTERM", `trap 'exit 1' TERM; echo up; while :; do sleep 0.05; done`, 0, "exited: exit status 1"},
		{"killed by SIGTERM", `echo up; while :; do sleep 0.05; done`, 0, "exited: signal: terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTB{}
			var p *Proc
			f.run(func(tb testing.TB) {
				p = Start(tb, exec.Command("sh", "-c", tc.script), ProcOptions{Name: "script", StopSignal: tc.stop})
				if err := p.WaitReady(5*time.Second, func() error {
					if !strings.Contains(p.Output(), "up") {
						return errors.New("not up")
					}
					return nil
				}); err != nil {
					tb.Fatal(err)
				}
			})
			pid := p.cmd.Process.Pid
			f.end()
			got := f.report()
			switch {
			case tc.wantErr == "" && got != "":
				t.Errorf("a clean stop failed the test: %s", got)
			case tc.wantErr != "" && !strings.Contains(got, "script: "+tc.wantErr):
				t.Errorf("cleanup reported %q, want %q", got, tc.wantErr)
			}
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d after the cleanup: %v, want it gone", pid, err)
			}
		})
	}

	// A process that exits before it is ready fails WaitReady at once.
	f := &fakeTB{}
	f.run(func(tb testing.TB) {
		p := Start(tb, exec.Command("sh", "-c", "echo bye; exit 2"), ProcOptions{})
		err := p.WaitReady(10*time.Second, func() error { return errors.New("never") })
		if err == nil || !strings.Contains(err.Error(), "sh exited before it was ready: exit status 2\nbye") {
			t.Errorf("WaitReady: %v", err)
		}
	})
	f.end()
	if !strings.Contains(f.report(), "sh: exited: exit status 2") {
		t.Errorf("cleanup of a process that failed on its own: %q", f.report())
	}
}

func TestNetns(t *testing.T) {
	NeedRoot(t)
	Need(t, "ip", "ss", "sleep")
	f := &fakeTB{}
	var ns string
	var port int
	var sleeper *exec.Cmd
	f.run(func(tb testing.TB) {
		ns = NewNetns(tb, "zttest-")
		// A process left in the namespace: its removal must kill it.
		sleeper = exec.Command("ip", "netns", "exec", ns, "sleep", "300")
		if err := sleeper.Start(); err != nil {
			tb.Fatal(err)
		}
		go sleeper.Wait()
		// A listener opened inside, seen by ss there and only there.
		var ln net.Listener
		if err := InNetns(ns, func() (err error) {
			ln, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		}); err != nil {
			tb.Fatal(err)
		}
		defer ln.Close()
		port = ln.Addr().(*net.TCPAddr).Port
		got, err := TCPListeners(ns)
		if err != nil {
			tb.Fatal(err)
		}
		if want := []string{"127.0.0.1:" + strconv.Itoa(port)}; !slices.Equal(got, want) {
			tb.Errorf("listeners in %s: %v, want %v", ns, got, want)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			pids, err := NetnsPIDs(ns)
			if err != nil {
				tb.Fatal(err)
			}
			if slices.Contains(pids, sleeper.Process.Pid) {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("sleep %d not among the processes in %s: %v", sleeper.Process.Pid, ns, pids)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	if !strings.HasPrefix(ns, "zttest-") || len(ns) != len("zttest-")+8 {
		t.Errorf("namespace name %q, want zttest- and 8 hex digits", ns)
	}
	f.end()
	if f.Failed() {
		t.Fatalf("namespace test: %s", f.report())
	}
	if _, err := os.Stat(NetnsPath(ns)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s after the cleanup: %v, want it gone", ns, err)
	}
	if err := syscall.Kill(sleeper.Process.Pid, 0); err == nil {
		// Reaped by the Wait goroutine shortly after the kill; a zombie
		// that is not reaped yet still counts as killed.
		time.Sleep(100 * time.Millisecond)
		if data, err := os.ReadFile("/proc/" + strconv.Itoa(sleeper.Process.Pid) + "/stat"); err == nil && !strings.Contains(string(data), ") Z ") {
			t.Errorf("sleep %d survived its namespace: %s", sleeper.Process.Pid, data)
		}
	}
}

func TestFixtures(t *testing.T) {
	base := []byte("a: 1\nb: 2\n")
	if got := string(Substitute(t, base, "a: 1", "a: 3", "b: 2", "b: 4")); got != "a: 3\nb: 4\n" {
		t.Errorf("Substitute: %q", got)
	}
	f := &fakeTB{}
	f.run(func(tb testing.TB) { Substitute(tb, base, "c: 5", "c: 6") })
	if !strings.Contains(f.report(), `the site has no "c: 5"`) {
		t.Errorf("Substitute of a missing string: %q", f.report())
	}
	if got := DiffLines("x\ny\n", "x\nz\n"); got != "- y\n+ z\n" {
		t.Errorf("DiffLines: %q", got)
	}
	hub := string(HubSite(2, "192.168.10.0/24", "2001:db8:10::/48"))
	for _, want := range []string{
		"admin_cidrs: [192.168.10.0/24, 2001:db8:10::/48]",
		"peers: [n1, n2]}",
		`{name: n2, endpoint: "10.200.0.2:51820"}`,
		"clients: [n1, n2]}",
	} {
		if !strings.Contains(hub, want) {
			t.Errorf("HubSite lacks %q:\n%s", want, hub)
		}
	}
	// A message whose checksum is set sums to zero.
	if msg := EchoRequest(0x1234, 7); icmpChecksum(msg) != 0 || msg[0] != 8 || string(msg[8:]) != echoPayload {
		t.Errorf("EchoRequest: % x does not check", msg)
	}

	dir := t.TempDir()
	p := WriteFile(t, dir, "f", []byte("data"))
	if err := os.Symlink("f", dir+"/l"); err != nil {
		t.Fatal(err)
	}
	dump, times := TreeDump(t, dir), Mtimes(t, dir)
	if !strings.Contains(dump, "f -rw------- ") || !strings.Contains(dump, "l Lrwxrwxrwx ") || !strings.Contains(dump, " -> f\n") {
		t.Errorf("TreeDump:\n%s", dump)
	}
	if _, ok := times[p]; !ok || len(times) != 2 {
		t.Errorf("Mtimes: %v, want the file and the link", times)
	}
}

func TestAllStrings(t *testing.T) {
	got := AllStrings("ab", 2)
	want := []string{"", "a", "b", "aa", "ab", "ba", "bb"}
	if !slices.Equal(got, want) {
		t.Errorf("AllStrings(ab, 2) = %q, want %q", got, want)
	}
	if n := len(AllStrings("aZ9-._", 3)); n != 1+6+36+216 {
		t.Errorf("AllStrings of 6 characters up to 3: %d strings", n)
	}
}

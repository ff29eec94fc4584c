//go:build linux

package testenv

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopTimeout bounds how long a process has to go once told to: one that
// Proc.Stop signalled, or one left in a namespace NewNetns removes.
const StopTimeout = 10 * time.Second

// ProcOptions says how Start runs a process and stops it. The zero value
// runs it in the test's own network namespace and stops it with SIGTERM.
type ProcOptions struct {
	// Name is the process's name in messages; "" for the program's.
	Name string
	// Netns is the network namespace, as NewNetns names it, the process
	// runs in; "" for the test's own.
	Netns string
	// StopSignal is what Stop sends first; 0 for SIGTERM.
	StopSignal syscall.Signal
}

// Proc is a child process that Start runs as the leader of a process group
// of its own.
type Proc struct {
	name     string
	cmd      *exec.Cmd
	out      Buffer
	stopSig  syscall.Signal
	done     chan struct{} // closed once the process has exited
	waitErr  error         // valid once done is closed
	stopOnce sync.Once
	stopErr  error
}

// Start runs cmd, which must not have been started and whose Stdout and
// Stderr must be unset (both go to Output), in a process group of its own
// with SIGKILL as its parent-death signal; what cmd.SysProcAttr already
// holds (credentials, clone flags) is kept. The process is started from a
// thread that stays alive until it exits (the parent-death signal follows
// that thread), in opts.Netns when that is set. When t ends, Start stops
// the process (see Stop) and fails t unless it exited with status 0; when t
// has failed it logs the process's output.
func Start(t testing.TB, cmd *exec.Cmd, opts ProcOptions) *Proc {
	t.Helper()
	p := &Proc{name: opts.Name, cmd: cmd, stopSig: opts.StopSignal, done: make(chan struct{})}
	if p.name == "" {
		p.name = filepath.Base(cmd.Path)
	}
	if p.stopSig == 0 {
		p.stopSig = syscall.SIGTERM
	}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		defer close(p.done)
		if opts.Netns != "" {
			if err := enterNetns(opts.Netns); err != nil {
				started <- err
				return
			}
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("%s: %v\n%s", p.name, err, tail(p.Output()))
		} else if t.Failed() {
			t.Logf("%s output:\n%s", p.name, tail(p.Output()))
		}
	})
	return p
}

// Stop sends the stop signal to the process group, waits at most
// StopTimeout for the process to exit and SIGKILLs the group if it has not,
// then SIGKILLs whatever is left of the group (workers, sessions) and
// waits, as long again at most, for it to be gone. It
// returns nil only if the process exited with status 0 without being
// killed. It may be called more than once; every call returns what the
// first one did.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		defer killGroup(pgid)
		select {
		case <-p.done:
		default:
			if err := syscall.Kill(-pgid, p.stopSig); err != nil && !errors.Is(err, syscall.ESRCH) {
				p.stopErr = fmt.Errorf("signal %v: %w", p.stopSig, err)
			}
			select {
			case <-p.done:
			case <-time.After(StopTimeout):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-p.done
				p.stopErr = fmt.Errorf("still running %s after %v; killed", StopTimeout, p.stopSig)
				return
			}
		}
		if p.stopErr == nil && p.waitErr != nil {
			p.stopErr = fmt.Errorf("exited: %w", p.waitErr)
		}
	})
	return p.stopErr
}

// killGroup SIGKILLs what is left of process group pgid and waits, at most
// StopTimeout, until it is gone.
func killGroup(pgid int) {
	deadline := time.Now().Add(StopTimeout)
	for syscall.Kill(-pgid, syscall.SIGKILL) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitReady calls ready every 50ms until it returns nil, and fails (with
// ready's last error and the process's output) once the process has exited
// or timeout has passed.
func (p *Proc) WaitReady(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v\n%s", p.name, p.waitErr, tail(p.Output()))
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w\n%s", p.name, timeout, err, tail(p.Output()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Output is what the process has written to its standard output and
// standard error so far.
func (p *Proc) Output() string { return p.out.String() }

// Listening is a readiness check for WaitReady: nil once something accepts
// TCP connections at addr (HOST:PORT) from the test's network namespace.
func Listening(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// tail is the end of a process's output, for messages.
func tail(s string) string {
	const n = 8000
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

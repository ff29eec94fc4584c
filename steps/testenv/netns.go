//go:build linux

package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Unique returns prefix followed by eight random hex digits: a name for a
// namespace, link or device that no other test uses. With a prefix of at
// most seven characters it is short enough for a link name.
func Unique(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return prefix + hex.EncodeToString(b)
}

// NetnsPath is where ip-netns(8) keeps the namespace called name.
func NetnsPath(name string) string { return "/run/netns/" + name }

// NewNetns creates a network namespace called Unique(prefix) with `ip netns
// add`, brings its loopback link up, and returns its name. When t ends it
// kills every process left in the namespace, waits (at most StopTimeout)
// for them to go, and deletes the namespace, and the links in it with it;
// it fails t if any of that fails. It needs root and ip.
func NewNetns(t testing.TB, prefix string) string {
	t.Helper()
	NeedRoot(t)
	Need(t, "ip")
	name := Unique(t, prefix)
	MustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if err := removeNetns(name); err != nil {
			t.Error(err)
		}
	})
	MustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// removeNetns kills the processes in namespace name and deletes it.
func removeNetns(name string) error {
	pids, err := NetnsPIDs(name)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(StopTimeout)
	for err == nil && len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		pids, err = NetnsPIDs(name)
	}
	if err == nil && len(pids) > 0 {
		err = fmt.Errorf("namespace %s: processes %v still there %s after SIGKILL", name, pids, StopTimeout)
	}
	if _, derr := RunTimeout(context.Background(), CmdTimeout, "ip", "netns", "del", name); derr != nil {
		if err != nil {
			return fmt.Errorf("%w; %w", err, derr)
		}
		return derr
	}
	return err
}

// NetnsPIDs lists the processes in namespace name, this one aside: a
// thread of the test that entered the namespace may make it listed there.
func NetnsPIDs(name string) ([]int, error) {
	out, err := RunTimeout(context.Background(), CmdTimeout, "ip", "netns", "pids", name)
	if err != nil {
		return nil, fmt.Errorf("processes in namespace %s: %w", name, err)
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// InNetns runs fn on a thread that entered namespace name: sockets fn
// opens belong to that namespace, wherever they are used later, and
// programs it starts run there. The thread is discarded afterwards.
func InNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := enterNetns(name); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// enterNetns moves the calling thread, which must be locked to its
// goroutine for good, into namespace name.
func enterNetns(name string) error {
	f, err := os.Open(NetnsPath(name))
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter namespace %s: %w", name, err)
	}
	return nil
}

// TCPListeners lists the TCP sockets listening in namespace name, as
// `ss -ltn` shows them: ADDR:PORT, an IPv6 address in brackets, sorted.
func TCPListeners(name string) ([]string, error) {
	out, err := RunTimeout(context.Background(), CmdTimeout, "ss", "-N", name, "-H", "-l", "-t", "-n")
	if err != nil {
		return nil, fmt.Errorf("listening sockets in %s: %w", name, err)
	}
	var got []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 4 {
			got = append(got, f[3])
		}
	}
	slices.Sort(got)
	return got, nil
}

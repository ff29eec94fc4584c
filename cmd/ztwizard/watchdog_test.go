package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ztwizard/steps/host"
)

// child is a process this test started, and when it ended.
type child struct {
	cmd   *exec.Cmd
	ended chan struct{}
}

func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(name, args...), ended: make(chan struct{})}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.ended) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.ended
	})
	return c
}

// endedWithin tells whether the process ended within d.
func (c *child) endedWithin(d time.Duration) bool {
	select {
	case <-c.ended:
		return true
	case <-time.After(d):
		return false
	}
}

// startTicks reads when pid started, in clock ticks after boot.
func startTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	n, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConfirmAndRollbackKillOnlyTheWatchdog writes a pending apply whose
// journal names, as its watchdog's, a process that is not that watchdog
// (an unrelated `sleep` that reused the pid, or a watchdog process that
// started at another time than recorded) and runs `confirm` and
// `rollback`: that process survives. A journal naming the real watchdog
// with its start time still stops it.
func TestConfirmAndRollbackKillOnlyTheWatchdog(t *testing.T) {
	const id = "20260101T000000Z-0123456789ab"
	watchdog := func(t *testing.T) *child {
		// A real watchdog, waiting for a deadline an hour away (its state
		// folder is elsewhere: it never acts).
		return startChild(t, bin, "rollback", "--state", t.TempDir(), "--watchdog", id,
			"--at", time.Now().Add(time.Hour).Format(time.RFC3339Nano))
	}
	tests := []struct {
		name     string
		start    func(t *testing.T) *child
		recorded func(t *testing.T, pid int) uint64 // the start time the journal keeps
		killed   bool
	}{
		{"unrelated sleep, no start time recorded", func(t *testing.T) *child { return startChild(t, "sleep", "60") },
			func(*testing.T, int) uint64 { return 0 }, false},
		{"unrelated sleep, another start time recorded", func(t *testing.T) *child { return startChild(t, "sleep", "60") },
			func(t *testing.T, pid int) uint64 { return startTicks(t, pid) - 1 }, false},
		{"unrelated sleep, its start time recorded", func(t *testing.T) *child { return startChild(t, "sleep", "60") },
			startTicks, false},
		{"watchdog command line, another start time recorded", watchdog,
			func(t *testing.T, pid int) uint64 { return startTicks(t, pid) + 1 }, false},
		{"the watchdog", watchdog, startTicks, true},
	}
	for _, command := range []string{"confirm", "rollback"} {
		for _, tt := range tests {
			t.Run(command+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				st := filepath.Join(dir, "state")
				c := tt.start(t)
				pid := c.cmd.Process.Pid
				jr := host.Journal{ID: id, Node: "db", PID: 1, PIDStart: 1, Started: time.Now().UTC(),
					Deadline: time.Now().Add(time.Hour).UTC(), Phase: host.PhaseApplied,
					Watchdog: fmt.Sprintf("pid %d", pid), WatchdogStart: tt.recorded(t, pid)}
				data, err := json.Marshal(jr)
				if err != nil {
					t.Fatal(err)
				}
				jdir := filepath.Join(st, "apply", "host")
				if err := os.MkdirAll(jdir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(jdir, "journal.json"), data, 0o600); err != nil {
					t.Fatal(err)
				}
				r := ztw(t, dir, "--state", st, command)
				if r.code != 0 {
					t.Fatalf("%s: exit %d\n%s%s", command, r.code, r.stdout, r.stderr)
				}
				if _, err := os.Stat(filepath.Join(jdir, "history", id+".json")); err != nil {
					t.Errorf("%s did not close the journal: %v", command, err)
				}
				if tt.killed {
					if !c.endedWithin(5 * time.Second) {
						t.Errorf("%s left the watchdog (pid %d) running", command, pid)
					}
				} else if c.endedWithin(200 * time.Millisecond) {
					t.Errorf("%s killed pid %d, which is not the watchdog", command, pid)
				}
			})
		}
	}
}

package host

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// A fault makes one step of an apply fail.
type fault struct {
	name string
	step string // the step the error must name
	// only limits the fault to one starting state ("empty" or "over db").
	only string
	// arm sets the fault up on a host in its starting state; the plan it
	// returns is the one to apply (nil: the example's web plan). undo, when
	// not nil, removes the fault again.
	arm func(t *testing.T, e *liveEnv, web *steps.Plan, start string) (plan *steps.Plan, undo func())
}

// writePIDFiles makes nginx and sshd look running on the host under root:
// their pid files name this (live) process. The runner fake records the
// reload it would send instead of sending it.
func writePIDFiles(t *testing.T, root string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"run/nginx.pid", "run/sshd.pid"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// copyHostNginx puts a copy of this machine's /etc/nginx under root, so the
// real `nginx -t` checks the staged configuration.
func copyHostNginx(t *testing.T, root string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/etc/nginx", filepath.Join(root, "etc/nginx")).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/nginx: %v: %s", err, out)
	}
}

var faults = []fault{
	{name: "nginx -t fails", step: "check", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		e.run.failNext("nginx -t", 1)
		return nil, nil
	}},
	{name: "broken nginx file, real nginx -t", step: "check", arm: func(t *testing.T, e *liveEnv, web *steps.Plan, _ string) (*steps.Plan, func()) {
		testenv.Need(t, "nginx")
		copyHostNginx(t, e.root)
		e.run.real["nginx"] = true
		conf := "/etc/nginx/conf.d/ztwizard-api.conf"
		broken := withFile(t, web, conf, append(fileOf(t, web, conf).Content, "\nbogus_directive on;\n"...))
		return broken, func() { e.run.real["nginx"] = false }
	}},
	{name: "sshd -t fails", step: "check", only: "empty", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		e.run.failNext("sshd -t", 1)
		return nil, nil
	}},
	{name: "watchdog does not start", step: "watchdog", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		e.a.Window = time.Minute
		e.a.StartWatchdog = func(*Journal) (string, error) { return "", errors.New("systemd-run: exit status 1") }
		return nil, func() { e.a.Window, e.a.StartWatchdog = 0, nil }
	}},
	{name: "unwritable file", step: "files", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, start string) (*steps.Plan, func()) {
		path := filepath.Join(e.root, "etc/wireguard/zt0.conf") // db's, replaced by web's
		if start == "empty" {
			// Nothing to protect yet: a folder nothing may be added to.
			path = filepath.Join(e.root, steps.EtcDir)
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		immutable(t, path)
		return nil, func() { setImmutable(t, path, false) }
	}},
	{name: "netlink batch refused", step: "firewall", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		e.fw.failNext = syscall.ENOBUFS
		return nil, nil
	}},
	{name: "userspace device does not start", step: "wireguard", only: "empty", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		e.startFails = true
		return nil, nil
	}},
	{name: "wgctrl refuses the configuration", step: "wireguard", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		e.wg.failConfigure = 1
		return nil, nil
	}},
	{name: "nginx reload fails", step: "reload", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		writePIDFiles(t, e.root)
		e.run.failNext("nginx -s reload", 1)
		return nil, nil
	}},
	{name: "systemctl enable fails", step: "enable", arm: func(t *testing.T, e *liveEnv, _ *steps.Plan, _ string) (*steps.Plan, func()) {
		if err := os.MkdirAll(filepath.Join(e.root, "run/systemd/system"), 0o755); err != nil {
			t.Fatal(err)
		}
		// No unit is enabled yet, and the last one (the device's) fails.
		e.run.failNext("systemctl is-enabled", 100)
		e.run.failNext("systemctl enable --quiet "+DeviceUnit(steps.WireGuardName), 1)
		return nil, func() {
			if n := len(e.run.ran("systemctl disable")); n == 0 {
				t.Errorf("the units enabled before the failure were not disabled again")
			}
		}
	}},
}

// TestApplyFaults makes each step of an apply fail in turn, on an empty
// host and on one where db's plan is applied, and applies web's plan: the
// error names the step, and the host (files, the whole ruleset, the
// WireGuard interface) is exactly as before. The same apply without the
// fault then succeeds.
func TestApplyFaults(t *testing.T) {
	pl := newPlanner(t)
	db, web := pl.plan(steps.ExampleYAML, "db"), pl.plan(steps.ExampleYAML, "web")
	for _, start := range []string{"empty", "over db"} {
		for _, f := range faults {
			if f.only != "" && f.only != start {
				continue
			}
			t.Run(start+"/"+f.name, func(t *testing.T) {
				e := newLive(t)
				if start == "over db" {
					mustApply(t, e.a, db)
				}
				plan, undo := f.arm(t, e, web, start)
				if plan == nil {
					plan = web
				}
				before := e.dump(t)
				res, err := e.a.Apply(context.Background(), plan)
				if err == nil {
					t.Fatalf("apply succeeded despite the fault: %+v", res)
				}
				if !strings.HasPrefix(err.Error(), "apply: "+f.step+": ") {
					t.Errorf("error %q does not name the step %q", err, f.step)
				}
				undone := "(everything was rolled back)"
				if f.step == "check" {
					undone = "(nothing was changed)"
				}
				if !strings.HasSuffix(err.Error(), undone) {
					t.Errorf("error %q does not end in %q", err, undone)
				}
				if after := e.dump(t); after != before {
					t.Fatalf("the host changed:\n%s", testenv.DiffLines(before, after))
				}
				if jr, err := e.a.Pending(); jr != nil || err != nil {
					t.Errorf("a journal is left pending: %+v, %v", jr, err)
				}
				hist, _ := os.ReadDir(filepath.Join(e.a.JournalDir, "history"))
				wantHist := map[string]int{"empty": 1, "over db": 2}[start]
				if f.step == "check" {
					wantHist-- // nothing was started
				}
				if len(hist) != wantHist {
					t.Errorf("history holds %d entries, want %d", len(hist), wantHist)
				}
				if undo != nil {
					undo()
				}
				res, err = e.a.Apply(context.Background(), web)
				if err != nil || !res.Changed() {
					t.Fatalf("the apply without the fault: %+v, %v", res, err)
				}
			})
		}
	}
}

package host

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/nft"
	"ztwizard/steps/testenv"
)

// deadPID returns the pid of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestConfirmWindowJournal applies web's plan over db's with a confirm
// window: the journal holds what is needed to undo it (backups of every
// file it changes, the firewall and WireGuard as they were, the manifest
// before), a second apply is refused, Rollback restores db's host exactly,
// and a confirmed apply stays.
func TestConfirmWindowJournal(t *testing.T) {
	pl := newPlanner(t)
	db, web := pl.plan(steps.ExampleYAML, "db"), pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e.a.Now = func() time.Time { return now }
	mustApply(t, e.a, db)
	dbHost := e.dump(t)
	dbTable, _, err := e.fw.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	var started, stopped []string
	e.a.Window = 2 * time.Minute
	e.a.StartWatchdog = func(j *Journal) (string, error) {
		started = append(started, j.ID)
		return "pid 999999", nil
	}
	e.a.StopWatchdog = func(j *Journal) { stopped = append(stopped, j.ID) }
	res := mustApply(t, e.a, web)
	if !res.Deadline.Equal(now.Add(2*time.Minute)) || !res.Firewall || !res.WireGuard {
		t.Fatalf("result %+v: want the deadline %v, firewall and WireGuard replaced", res, now.Add(2*time.Minute))
	}
	webHost := e.dump(t)

	jr, err := e.a.Pending()
	if err != nil || jr == nil {
		t.Fatalf("Pending: %+v, %v", jr, err)
	}
	if jr.Phase != PhaseApplied || jr.Node != "web" || jr.PID != os.Getpid() || jr.PIDStart == 0 || jr.PIDStart != procStart(os.Getpid()) ||
		!jr.Deadline.Equal(res.Deadline) ||
		jr.Watchdog != "pid 999999" || !slices.Equal(started, []string{jr.ID}) {
		t.Errorf("journal %+v (watchdogs started %v)", jr, started)
	}
	backups := map[string]FileBackup{}
	for _, b := range jr.Files {
		backups[b.Path] = b
	}
	js := e.a.journal()
	for _, tc := range []struct {
		path    string
		existed bool
		content []byte
	}{
		{"/etc/wireguard/zt0.conf", true, fileOf(t, db, "/etc/wireguard/zt0.conf").Content},
		{"/etc/mysql/mariadb.conf.d/90-ztwizard.cnf", true, fileOf(t, db, "/etc/mysql/mariadb.conf.d/90-ztwizard.cnf").Content},
		{"/etc/nginx/conf.d/ztwizard-api.conf", false, nil},
		{"/etc/ztwizard/tls/api.key", false, nil},
	} {
		b, ok := backups[tc.path]
		if !ok {
			t.Errorf("journal has no entry for %s", tc.path)
			continue
		}
		if b.Existed != tc.existed || !b.Done {
			t.Errorf("%s: existed %v done %v, want existed %v and done", tc.path, b.Existed, b.Done, tc.existed)
		}
		if tc.existed {
			data, err := js.readBackup(b.Backup)
			if err != nil || string(data) != string(tc.content) || b.Mode != 0o600 && b.Mode != 0o644 {
				t.Errorf("%s: backup %q (mode %v), %v; want db's file", tc.path, data, b.Mode, err)
			}
		}
	}
	if _, ok := backups[steps.SiteFilePath]; ok {
		t.Errorf("the journal backs up %s, which both plans share unchanged", steps.SiteFilePath)
	}
	if jr.Firewall == nil || !jr.Firewall.Existed || jr.Firewall.Text != dbTable || !jr.Firewall.Done {
		t.Errorf("firewall snapshot %+v, want db's table", jr.Firewall)
	}
	if jr.WG == nil || !jr.WG.Existed || jr.WG.PrivateKey != fileKey(t, db) || !slices.Equal(jr.WG.Addresses, []string{"10.100.0.1/24"}) {
		t.Errorf("WireGuard snapshot %+v, want db's interface", jr.WG)
	}
	if jr.Manifest == nil || len(jr.Manifest.Files) != len(db.Files) {
		t.Errorf("journal's manifest %+v, want db's %d files", jr.Manifest, len(db.Files))
	}
	if !slices.Contains(jr.Dirs, "/etc/nginx/conf.d") || !slices.Contains(jr.Dirs, "/etc/ztwizard/tls") || slices.Contains(jr.Dirs, "/etc/ztwizard") {
		t.Errorf("journal's new folders %v", jr.Dirs)
	}
	for path, want := range map[string]os.FileMode{
		e.a.JournalDir: 0o700 | os.ModeDir, filepath.Join(e.a.JournalDir, "journal.json"): 0o600,
		filepath.Join(e.a.JournalDir, backups["/etc/wireguard/zt0.conf"].Backup): 0o600,
	} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, want mode %v", path, fi.Mode(), want)
		}
	}

	if _, err := e.a.Apply(context.Background(), db); !errors.Is(err, ErrPending) {
		t.Errorf("apply while one is pending: %v, want ErrPending", err)
	}
	if _, err := e.a.Rollback(context.Background(), "another-id"); !errors.Is(err, ErrNothingPending) {
		t.Errorf("rollback of another apply: %v, want ErrNothingPending", err)
	}
	if got := e.dump(t); got != webHost {
		t.Fatalf("refused calls changed the host:\n%s", testenv.DiffLines(webHost, got))
	}
	if _, err := e.a.Rollback(context.Background(), jr.ID); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if got := e.dump(t); got != dbHost {
		t.Fatalf("after the rollback the host is not db's again:\n%s", testenv.DiffLines(dbHost, got))
	}
	if !slices.Equal(stopped, []string{jr.ID}) {
		t.Errorf("watchdogs stopped: %v, want %s's", stopped, jr.ID)
	}
	if _, err := os.Stat(filepath.Join(e.a.JournalDir, "backups", jr.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backups of a closed journal remain: %v", err)
	}
	if outcome := historyOutcome(t, e.a, jr.ID); outcome != "rolled back" {
		t.Errorf("history outcome %q", outcome)
	}
	for name, call := range map[string]func() error{
		"confirm":  func() error { _, err := e.a.Confirm(); return err },
		"rollback": func() error { _, err := e.a.Rollback(context.Background(), ""); return err },
	} {
		if err := call(); !errors.Is(err, ErrNothingPending) {
			t.Errorf("%s with nothing pending: %v, want ErrNothingPending", name, err)
		}
	}

	mustApply(t, e.a, web)
	jr, _ = e.a.Pending()
	if _, err := e.a.Confirm(); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	if got := e.dump(t); got != webHost {
		t.Fatalf("a confirmed apply did not stay:\n%s", testenv.DiffLines(webHost, got))
	}
	if p, err := e.a.Pending(); p != nil || err != nil || historyOutcome(t, e.a, jr.ID) != "confirmed" || stopped[len(stopped)-1] != jr.ID {
		t.Errorf("after Confirm: pending %+v, %v; stopped %v", p, err, stopped)
	}
	if n, err := e.a.Installed(); n != len(web.Files) || err != nil {
		t.Errorf("Installed: %d, %v; want %d", n, err, len(web.Files))
	}
}

// fileKey is the WireGuard private key a plan installs.
func fileKey(t *testing.T, p *steps.Plan) string {
	t.Helper()
	return strings.TrimSpace(string(fileOf(t, p, steps.WireGuardKeyPath).Content))
}

func historyOutcome(t *testing.T, a *Applier, id string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(a.JournalDir, "history", id+".json"))
	if err != nil {
		t.Fatalf("history of %s: %v", id, err)
	}
	var h struct {
		Outcome string `json:"outcome"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h.Outcome
}

// interrupt turns the pending apply's journal into that of an apply killed
// half-way by process pid.
func interrupt(t *testing.T, a *Applier, pid int) *Journal {
	t.Helper()
	js := a.journal()
	jr, err := js.load()
	if err != nil || jr == nil {
		t.Fatalf("no journal to interrupt: %v", err)
	}
	jr.Phase, jr.PID, jr.PIDStart, jr.Deadline = PhaseApplying, pid, procStart(pid), time.Time{}
	if err := js.save(jr); err != nil {
		t.Fatal(err)
	}
	return jr
}

// TestInterruptedApply: a journal left by an apply that died half-way is
// refused by Confirm, blocks nobody while its process is gone (or its pid
// runs another process now), and is undone first by the next Apply or by
// Rollback, with the temporary file of a write it was killed in; while its
// process lives, Apply refuses to run.
func TestInterruptedApply(t *testing.T) {
	pl := newPlanner(t)
	db, web := pl.plan(steps.ExampleYAML, "db"), pl.plan(steps.ExampleYAML, "web")
	for _, next := range []string{"apply", "rollback"} {
		t.Run(next, func(t *testing.T) {
			e := newLive(t)
			mustApply(t, e.a, db)
			dbHost := e.dump(t)
			e.a.Window = time.Minute
			mustApply(t, e.a, web)
			e.a.Window = 0

			interrupt(t, e.a, os.Getppid())
			if _, err := e.a.Confirm(); err == nil || !strings.Contains(err.Error(), "did not finish") {
				t.Errorf("Confirm of an interrupted apply: %v", err)
			}
			_, err := e.a.Apply(context.Background(), db)
			if err == nil || !strings.Contains(err.Error(), "another apply (pid "+strconv.Itoa(os.Getppid())+") is running") {
				t.Errorf("apply while the journal's process lives: %v", err)
			}

			// The journal's pid now runs another process: not the apply.
			reused := interrupt(t, e.a, os.Getppid())
			reused.PIDStart++
			if err := e.a.journal().save(reused); err != nil {
				t.Fatal(err)
			}
			if r, err := e.a.Pending(); err != nil || r.PIDStart != procStart(os.Getppid())+1 {
				t.Fatalf("journal: %+v, %v", r, err)
			}
			if !running(os.Getppid(), procStart(os.Getppid())) || running(os.Getppid(), reused.PIDStart) || running(deadPID(t), 0) {
				t.Fatal("running() misreads a process's start time")
			}

			jr := interrupt(t, e.a, deadPID(t))
			// What a kill in the middle of writing a file leaves beside it.
			tmp := filepath.Join(e.root, filepath.Dir(jr.Files[0].Path), ".atomicfile-KILLED.tmp")
			if err := os.WriteFile(tmp, []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
			if next == "apply" {
				jr = reused // the reused pid blocks nothing
				if err := e.a.journal().save(jr); err != nil {
					t.Fatal(err)
				}
			}
			switch next {
			case "apply":
				res := mustApply(t, e.a, db)
				if res.Changed() {
					t.Errorf("undoing the interrupted apply should leave db's plan in place, but the apply changed %+v", res)
				}
			case "rollback":
				if _, err := e.a.Rollback(context.Background(), ""); err != nil {
					t.Fatalf("Rollback: %v", err)
				}
			}
			if got := e.dump(t); got != dbHost {
				t.Fatalf("after %s the host is not db's:\n%s", next, testenv.DiffLines(dbHost, got))
			}
			if outcome := historyOutcome(t, e.a, jr.ID); !strings.HasPrefix(outcome, "rolled back") {
				t.Errorf("history outcome %q", outcome)
			}
		})
	}
}

// TestRollbackRetried: a rollback that fails keeps its journal and can run
// again; a corrupt journal is reported with its path.
func TestRollbackRetried(t *testing.T) {
	pl := newPlanner(t)
	db, web := pl.plan(steps.ExampleYAML, "db"), pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	mustApply(t, e.a, db)
	dbHost := e.dump(t)
	e.a.Window = time.Minute
	mustApply(t, e.a, web)

	e.fw.restoreErr = errors.New("firewall: restore: exit status 1")
	_, err := e.a.Rollback(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "rollback: firewall: restore") {
		t.Fatalf("Rollback with a failing restore: %v", err)
	}
	if jr, _ := e.a.Pending(); jr == nil {
		t.Fatal("a failed rollback closed its journal")
	}
	e.fw.restoreErr = nil
	if _, err := e.a.Rollback(context.Background(), ""); err != nil {
		t.Fatalf("second Rollback: %v", err)
	}
	if got := e.dump(t); got != dbHost {
		t.Fatalf("after the retried rollback:\n%s", testenv.DiffLines(dbHost, got))
	}

	if err := os.WriteFile(filepath.Join(e.a.JournalDir, "journal.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"apply":    func() error { _, err := e.a.Apply(context.Background(), db); return err },
		"confirm":  func() error { _, err := e.a.Confirm(); return err },
		"rollback": func() error { _, err := e.a.Rollback(context.Background(), ""); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), filepath.Join(e.a.JournalDir, "journal.json")) {
			t.Errorf("%s with a corrupt journal: %v, want an error naming it", name, err)
		}
	}
}

// TestLiveIdempotent: the first apply into a namespace without the table
// does not list it; the second apply of a plan reads the host and
// changes nothing: no file written, no netlink batch, no WireGuard
// configuration, no reload.
func TestLiveIdempotent(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	writePIDFiles(t, e.root)
	res := mustApply(t, e.a, web)
	if !slices.Equal(res.Reloaded, []string{"ssh.service", "nginx.service"}) {
		t.Errorf("reloaded %v", res.Reloaded)
	}
	// There was no table to list: netlink said so, nft was not started.
	if listed := e.run.ran("nft list"); len(listed) != 0 {
		t.Errorf("first apply into a namespace without the table ran %q", listed)
	}
	host, times := e.dump(t), testenv.Mtimes(t, e.root)
	replaced, configured, calls := e.fw.replaced, e.wg.configured, len(e.run.calls)
	time.Sleep(20 * time.Millisecond)
	res = mustApply(t, e.a, web)
	if res.Changed() || len(res.Reloaded) != 0 {
		t.Fatalf("second apply: %+v", res)
	}
	if e.fw.replaced != replaced || e.wg.configured != configured {
		t.Errorf("second apply sent %d batches and %d WireGuard configurations", e.fw.replaced-replaced, e.wg.configured-configured)
	}
	// Not even nft: the kernel's table still has the fingerprint the
	// manifest recorded, so it is not listed.
	for _, c := range e.run.calls[calls:] {
		t.Errorf("second apply ran %q", c)
	}
	if got := e.dump(t); got != host {
		t.Errorf("second apply changed the host:\n%s", testenv.DiffLines(host, got))
	}
	for p, m := range testenv.Mtimes(t, e.root) {
		if !m.Equal(times[p]) {
			t.Errorf("%s rewritten", p)
		}
	}
}

// TestLiveFirewallChangedByHand: a table changed behind ztwizard's back
// (an element added, a rule deleted, the table replaced with nft -f by
// the same text) is found by the next apply, which lists it again and
// puts back the plan's table, after which nothing is listed again; with
// the plan's own text loaded by hand nothing is sent.
func TestLiveFirewallChangedByHand(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	mustApply(t, e.a, web)
	list := "nft list table " + nft.Family + " " + nft.TableName
	listed := func() int { return len(e.run.ran(list)) }
	for _, tc := range []struct{ name, script string }{
		{"element added", "add element inet ztwizard ssh_nodes { 10.99.0.9 }\n"},
		{"rule deleted", "flush chain inet ztwizard forward\nadd rule inet ztwizard forward ct state established accept\n"},
	} {
		before, replaced := listed(), e.fw.replaced
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(tc.script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: nft: %v: %s", tc.name, err, out)
		}
		res := mustApply(t, e.a, web)
		if !res.Firewall || e.fw.replaced != replaced+1 || listed() != before+1 {
			t.Fatalf("%s: the apply after it replaced the table %v (%d batches, %d listings)", tc.name, res.Firewall, e.fw.replaced-replaced, listed()-before)
		}
		if got := kernelTable(t); got != web.Firewall.Text() {
			t.Fatalf("%s: the table is not the plan's again:\n%s", tc.name, got)
		}
		if res := mustApply(t, e.a, web); res.Changed() || listed() != before+1 {
			t.Fatalf("%s: the apply after the repair: %+v, %d listings", tc.name, res, listed()-before-1)
		}
	}
	// The same text loaded by hand: a new table (new handles), listed,
	// found the same, not sent. (A no-op apply writes no manifest, so
	// later applies list it too, until one changes something.)
	before, replaced := listed(), e.fw.replaced
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(web.Firewall.Script())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	if res := mustApply(t, e.a, web); res.Changed() || e.fw.replaced != replaced || listed() != before+1 {
		t.Fatalf("the same table by hand: %+v, %d batches, %d listings", res, e.fw.replaced-replaced, listed()-before)
	}
}

// kernelTable is the inet ztwizard table as nft lists it.
func kernelTable(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", nft.Family, nft.TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	return string(out)
}

// TestReloadOnlyRunningDaemons: a reload goes to a daemon whose pid file
// names a live process, and to nothing else: not to an empty pid file (as
// `nginx -t` leaves), not to a dead pid.
func TestReloadOnlyRunningDaemons(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	for _, tc := range []struct {
		name       string
		nginx, ssh string
		want       []string
	}{
		{"none", "", "", nil},
		{"empty and dead pid files", "\n", strconv.Itoa(deadPID(t)), nil},
		{"both running", "self", "self", []string{"kill -HUP " + strconv.Itoa(os.Getpid()), "nginx -s reload"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLive(t)
			for file, content := range map[string]string{"run/nginx.pid": tc.nginx, "run/sshd.pid": tc.ssh} {
				if content == "" {
					continue
				}
				if content == "self" {
					content = strconv.Itoa(os.Getpid())
				}
				os.MkdirAll(filepath.Join(e.root, "run"), 0o755)
				if err := os.WriteFile(filepath.Join(e.root, file), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			mustApply(t, e.a, web)
			got := append(e.run.ran("kill"), e.run.ran("nginx -s")...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("reloads %q, want %q", got, tc.want)
			}
		})
	}
}

// TestCheckStagesNginxPIDFile: `nginx -t` checks a staged copy whose pid
// file lies in the staging folder, so the check leaves no pid file on the
// host; the staged configuration points at the staged files.
func TestCheckStagesNginxPIDFile(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	conf := "user www-data;\npid /run/nginx.pid;\nevents {}\nhttp {\n\tinclude /etc/nginx/conf.d/*.conf;\n}\n"
	if err := os.MkdirAll(filepath.Join(e.root, "etc/nginx"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "etc/nginx/nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var staged, api string
	e.run.onRun = func(line string, args []string) {
		if !strings.HasPrefix(line, "nginx -t") {
			return
		}
		data, _ := os.ReadFile(args[len(args)-1])
		staged = string(data)
		apiConf, _ := os.ReadFile(filepath.Join(filepath.Dir(args[len(args)-1]), "conf.d/ztwizard-api.conf"))
		api = string(apiConf)
	}
	mustApply(t, e.a, web)
	dir := strings.TrimSuffix(e.run.ran("nginx -t")[0][len("nginx -t -q -c "):], "/etc/nginx/nginx.conf")
	if !strings.Contains(staged, "pid "+dir+"/nginx.pid;") || strings.Contains(staged, "/run/nginx.pid") ||
		!strings.Contains(staged, "include "+dir+"/etc/nginx/conf.d/*.conf;") {
		t.Errorf("staged nginx.conf:\n%s", staged)
	}
	if !strings.Contains(api, dir+steps.TLSDir+"/api.crt") {
		t.Errorf("staged service does not point at the staged certificate:\n%s", api)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging folder %s left behind: %v", dir, err)
	}
}

// TestWGSameIgnoresRoamedEndpoint: a peer the plan gives no endpoint keeps
// the one it roamed to without counting as a change; a peer whose planned
// endpoint moved is a change.
func TestWGSameIgnoresRoamedEndpoint(t *testing.T) {
	now := &WGSnapshot{Name: "zt0", Existed: true, ListenPort: 51820, Addresses: []string{"10.0.0.1/24"},
		Peers: []WGPeer{{PublicKey: "k", Endpoint: "198.51.100.7:4444", AllowedIPs: []string{"10.0.0.2/32"}}}}
	want := *now
	want.Peers = []WGPeer{{PublicKey: "k", AllowedIPs: []string{"10.0.0.2/32"}}}
	if !now.same(&want) {
		t.Error("a roamed endpoint of a peer without a planned one counts as a change")
	}
	want.Peers = []WGPeer{{PublicKey: "k", Endpoint: "192.0.2.1:51820", AllowedIPs: []string{"10.0.0.2/32"}}}
	if now.same(&want) {
		t.Error("a moved planned endpoint does not count as a change")
	}
	if d := wgDiff(now, &want); !strings.Contains(d, "~ peer k allowed 10.0.0.2/32 endpoint 192.0.2.1:51820") {
		t.Errorf("diff:\n%s", d)
	}
}

// TestFakeDeviceProcess is no test: started by startFakeDevice, it stands
// for a userspace device's process (`wg device NAME` on its command line,
// no child processes) until it is killed.
func TestFakeDeviceProcess(t *testing.T) {
	if os.Getenv("ZTWIZARD_FAKE_DEVICE") == "" {
		return
	}
	time.Sleep(time.Minute)
	os.Exit(0)
}

// startFakeDevice starts a process whose command line ends in
// `wg device NAME`, from the calling thread (and so in its network
// namespace), killed when the test ends.
func startFakeDevice(t *testing.T, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFakeDeviceProcess$", "wg", "device", name)
	cmd.Env = append(os.Environ(), "ZTWIZARD_FAKE_DEVICE=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd
}

// TestIsDevice: a rollback signals the journal's device pid only while
// that pid runs `wg device NAME` (a pid from a journal may have been
// reused since).
func TestIsDevice(t *testing.T) {
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	device := startFakeDevice(t, "zt0").Process.Pid
	for _, tc := range []struct {
		pid  int
		name string
		want bool
	}{
		{device, "zt0", true},
		{device, "zt1", false},
		{sleeper.Process.Pid, "zt0", false},
		{deadPID(t), "zt0", false},
	} {
		if got := isDevice(tc.pid, tc.name); got != tc.want {
			t.Errorf("isDevice(%d, %s) = %v, want %v", tc.pid, tc.name, got, tc.want)
		}
	}
}

// TestSystemdUnitsUndone: where systemd runs, an apply enables the units
// that were not enabled (recording them first) and reloads through
// systemctl; its rollback disables them again while their files are there,
// stops the device's unit, and has systemd read the restored unit files.
func TestSystemdUnitsUndone(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	if err := os.MkdirAll(filepath.Join(e.root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := e.dump(t)
	e.run.failNext("systemctl is-enabled --quiet ztwizard-firewall.service", 1) // not enabled yet
	e.run.failNext("systemctl is-enabled --quiet "+DeviceUnit(steps.WireGuardName), 1)
	e.a.Window = time.Minute
	res := mustApply(t, e.a, web)
	if !slices.Equal(res.Reloaded, []string{"ssh.service", "nginx.service"}) ||
		len(e.run.ran("systemctl reload-or-restart")) != 2 || len(e.run.ran("systemctl daemon-reload")) != 1 {
		t.Errorf("reloads %v; systemctl calls %q", res.Reloaded, e.run.ran("systemctl"))
	}
	enabled := e.run.ran("systemctl enable")
	want := []string{"systemctl enable --quiet ztwizard-firewall.service", "systemctl enable --quiet " + DeviceUnit(steps.WireGuardName)}
	if !slices.Equal(enabled, want) {
		t.Errorf("enabled %q, want %q (the units that were not enabled yet)", enabled, want)
	}
	jr, _ := e.a.Pending()
	if jr == nil || !slices.Equal(jr.Enabled, []string{"ztwizard-firewall.service", DeviceUnit(steps.WireGuardName)}) {
		t.Fatalf("journal's enabled units: %+v", jr)
	}

	calls := len(e.run.calls)
	if _, err := e.a.Rollback(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	var sys []string
	for _, c := range e.run.calls[calls:] {
		if strings.HasPrefix(c, "systemctl ") {
			sys = append(sys, c)
		}
	}
	wantSys := []string{
		"systemctl stop " + DeviceUnit(steps.WireGuardName),
		"systemctl show --property=LoadState --value " + DeviceUnit(steps.WireGuardName),
		"systemctl disable --quiet " + DeviceUnit(steps.WireGuardName),
		"systemctl show --property=LoadState --value ztwizard-firewall.service",
		"systemctl disable --quiet ztwizard-firewall.service",
		"systemctl daemon-reload",
		"systemctl is-active --quiet ssh.service",
		"systemctl reload-or-restart ssh.service",
		"systemctl is-active --quiet nginx.service",
		"systemctl reload-or-restart nginx.service",
	}
	if !slices.Equal(sys, wantSys) {
		t.Errorf("rollback ran\n%q\nwant\n%q", sys, wantSys)
	}
	if got := e.dump(t); got != empty {
		t.Errorf("after the rollback:\n%s", testenv.DiffLines(empty, got))
	}
}

// TestStopDevicesInThisNamespace: undoing a device that did not exist
// stops every `wg device NAME` process of this network namespace, also one
// no journal names (an apply killed while it started it), and leaves those
// of other namespaces alone.
func TestStopDevicesInThisNamespace(t *testing.T) {
	newLive(t)
	inside := startFakeDevice(t, "zt0")
	outsideCh := make(chan *exec.Cmd)
	go func() { outsideCh <- startFakeDevice(t, "zt0") }() // another thread: this machine's namespace
	outside := <-outsideCh
	if got := devicePIDs("zt0"); !slices.Equal(got, []int{inside.Process.Pid}) {
		t.Fatalf("devices in this namespace: %v, want only %d (not %d)", got, inside.Process.Pid, outside.Process.Pid)
	}
	if err := stopDevices("zt0", 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if isDevice(inside.Process.Pid, "zt0") {
		t.Error("the device of this namespace still runs")
	}
	if !isDevice(outside.Process.Pid, "zt0") {
		t.Error("the device of another namespace was stopped")
	}
}

// TestStaleFilesRestoredOnRollback: an apply that drops a service removes
// its files and the folders ztwizard made for them alone; rolling it back
// brings both back, exactly.
func TestStaleFilesRestoredOnRollback(t *testing.T) {
	pl := newPlanner(t)
	web, bare := pl.plan(steps.ExampleYAML, "web"), pl.plan(noService(t), "web")
	e := newLive(t)
	mustApply(t, e.a, web)
	withService := e.dump(t)
	e.a.Window = time.Minute
	res := mustApply(t, e.a, bare)
	for _, p := range []string{"/etc/nginx/conf.d/ztwizard-api.conf", "/etc/ztwizard/tls/api.crt", "/etc/ztwizard/tls/api.key", steps.CACertPath} {
		if !slices.Contains(res.Files, p) {
			t.Errorf("%s not among the files changed: %v", p, res.Files)
		}
		if _, err := os.Lstat(filepath.Join(e.root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	// Deepest first: the folders ztwizard made that nothing needs now.
	pruned := []string{steps.TLSDir, "/etc/nginx/conf.d", "/etc/nginx"}
	for _, d := range pruned {
		if _, err := os.Stat(filepath.Join(e.root, d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", d, err)
		}
	}
	jr, _ := e.a.Pending()
	if jr == nil || !slices.Equal(jr.Pruned, pruned) {
		t.Fatalf("journal: %+v, want %v pruned", jr, pruned)
	}
	if _, err := e.a.Rollback(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if got := e.dump(t); got != withService {
		t.Fatalf("after the rollback:\n%s", testenv.DiffLines(withService, got))
	}
	if m, _ := e.a.journal().manifest(); m == nil || !slices.Contains(m.Files, "/etc/ztwizard/tls/api.key") || !slices.Contains(m.Dirs, steps.TLSDir) {
		t.Errorf("manifest after the rollback: %+v", m)
	}
}

// TestTimersStartWithTheirApply: an enabled timer runs only once started,
// so an apply starts the plan's timers (the CRL refresh, the pull, the
// status metrics) instead of leaving them to the next boot; its rollback
// disables and stops the ones it enabled.
func TestTimersStartWithTheirApply(t *testing.T) {
	pl := newPlanner(t)
	web := pl.plan(steps.ExampleYAML, "web")
	e := newLive(t)
	if err := os.MkdirAll(filepath.Join(e.root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.run.failNext("systemctl is-enabled --quiet "+steps.StatusTimer, 1) // not enabled yet
	e.a.Window = time.Minute
	mustApply(t, e.a, web)
	var timers []string
	for _, u := range web.Units {
		if u.Enable && strings.HasSuffix(u.Name, ".timer") {
			timers = append(timers, u.Name)
		}
	}
	if len(timers) < 2 {
		t.Fatalf("web's plan enables timers %q", timers)
	}
	for _, timer := range timers {
		// Without waiting for the job: an apply from a unit early in the
		// boot (cloud-init's bootcmd) would wait for itself.
		if got := e.run.ran("systemctl start " + timer); len(got) != 1 || !strings.HasSuffix(got[0], " --no-block --job-mode=ignore-requirements") {
			t.Errorf("%s: started %q, want once, not waiting and pulling in nothing: %q", timer, got, e.run.ran("systemctl"))
		}
	}
	calls := len(e.run.calls)
	if _, err := e.a.Rollback(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	var disabled []string
	for _, c := range e.run.calls[calls:] {
		if strings.HasPrefix(c, "systemctl disable") {
			disabled = append(disabled, c)
		}
	}
	if !slices.Equal(disabled, []string{"systemctl disable --quiet --now --no-block " + steps.StatusTimer}) {
		t.Errorf("the rollback disabled %q, want the status timer it enabled, stopped", disabled)
	}
}

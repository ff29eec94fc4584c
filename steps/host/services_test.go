package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// postgresSite is the example with its database on PostgreSQL.
func postgresSite(t testing.TB) []byte {
	return siteYAML(t, "engine: mariadb, port: 3306", "engine: postgresql, port: 5432")
}

// TestServiceActions: a changed listen address restarts the database (a
// reload cannot apply it); a changed pg_hba.conf alone reloads it; nginx and
// sshd reload; a unit none of whose files changed is left alone.
func TestServiceActions(t *testing.T) {
	pl := newPlanner(t)
	maria := pl.plan(steps.ExampleYAML, "db")
	pg := pl.plan(postgresSite(t), "db")
	web := pl.plan(steps.ExampleYAML, "web")
	for _, tc := range []struct {
		name    string
		plan    *steps.Plan
		changed []string
		want    []string
	}{
		{"mariadb bind-address", maria, []string{steps.MariaDBConfPath}, []string{"restart mariadb.service (" + steps.MariaDBConfPath + " changed: a reload cannot apply it)"}},
		{"postgresql listen_addresses", pg, []string{steps.PostgreSQLConfPath, steps.PostgreSQLHBAPath}, []string{"restart postgresql.service (" + steps.PostgreSQLConfPath + " changed: a reload cannot apply it)"}},
		{"pg_hba.conf alone", pg, []string{steps.PostgreSQLHBAPath}, []string{"reload postgresql.service"}},
		{"sshd drop-in", maria, []string{steps.SSHDropInPath}, []string{"reload ssh.service"}},
		{"nginx and its CRL", web, []string{steps.CRLPath, steps.SSHKRLPath}, []string{"reload ssh.service", "reload nginx.service"}},
		{"nothing a daemon reads", maria, []string{steps.NftablesPath}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := map[string]bool{}
			for _, c := range tc.changed {
				changed[c] = true
			}
			var got []string
			for _, a := range serviceActions(tc.plan, changed) {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("actions %q, want %q", got, tc.want)
			}
		})
	}
}

// systemdRoot makes e's root look like a host systemd runs.
func systemdRoot(t *testing.T, e *liveEnv) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(e.root, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestDatabaseRestartedNotReloaded: under systemd, a first apply of db
// restarts MariaDB (its bind-address changed) and says so in the plan and
// the result; it never reports a reload for it.
func TestDatabaseRestartedNotReloaded(t *testing.T) {
	pl := newPlanner(t)
	db := pl.plan(steps.ExampleYAML, "db")
	e := newLive(t)
	systemdRoot(t, e)
	diff, err := e.a.Diff(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(diff, "@@ service: restart mariadb.service ("+steps.MariaDBConfPath+" changed: a reload cannot apply it) @@") ||
		!strings.Contains(diff, "@@ service: reload ssh.service @@") {
		t.Errorf("the plan does not say what happens to the daemons:\n%s", diff)
	}
	res := mustApply(t, e.a, db)
	if !slices.Equal(res.Restarted, []string{"mariadb.service"}) || slices.Contains(res.Reloaded, "mariadb.service") {
		t.Errorf("restarted %v, reloaded %v: want mariadb.service restarted", res.Restarted, res.Reloaded)
	}
	if got := e.run.ran("systemctl restart"); !slices.Equal(got, []string{"systemctl restart mariadb.service"}) {
		t.Errorf("systemctl restart calls %q", got)
	}
	if got := e.run.ran("systemctl reload-or-restart mariadb"); len(got) != 0 {
		t.Errorf("mariadb was reloaded: %q", got)
	}
}

// TestStoppedDaemonNotReported: a daemon that does not run is neither
// reloaded nor reported as reloaded.
func TestStoppedDaemonNotReported(t *testing.T) {
	pl := newPlanner(t)
	db := pl.plan(steps.ExampleYAML, "db")
	e := newLive(t)
	systemdRoot(t, e)
	e.run.failNext("systemctl is-active --quiet", 100)
	res := mustApply(t, e.a, db)
	if len(res.Reloaded) != 0 || len(res.Restarted) != 0 {
		t.Errorf("reloaded %v, restarted %v: nothing runs", res.Reloaded, res.Restarted)
	}
	if got := e.run.ran("systemctl re"); len(got) != 0 {
		t.Errorf("stopped daemons were touched: %q", got)
	}
}

// TestMissingUnitFoundInCheck: a PostgreSQL database on a host without
// PostgreSQL fails in the check phase, naming the package, with nothing
// changed and no systemctl enable run.
func TestMissingUnitFoundInCheck(t *testing.T) {
	pl := newPlanner(t)
	db := pl.plan(postgresSite(t), "db")
	e := newLive(t)
	systemdRoot(t, e)
	e.run.answer("systemctl show --property=LoadState --value postgresql.service", "not-found\n")
	before := e.dump(t)
	_, err := e.a.Apply(context.Background(), db)
	if err == nil || !strings.Contains(err.Error(), "postgresql.service is not installed on this host: install the package postgresql") ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("apply: %v", err)
	}
	if got := e.dump(t); got != before {
		t.Errorf("the host changed:\n%s", got)
	}
	if got := e.run.ran("systemctl enable"); len(got) != 0 {
		t.Errorf("units were enabled: %q", got)
	}
	if jr, _ := e.a.Pending(); jr != nil {
		t.Errorf("a journal was left: %+v", jr)
	}
}

// TestRollbackSkipsUninstalledUnit: a unit the journal lists as enabled
// whose file does not exist (its enable failed) is not disabled again, so
// the rollback does not fail the way the apply did.
func TestRollbackSkipsUninstalledUnit(t *testing.T) {
	pl := newPlanner(t)
	db := pl.plan(steps.ExampleYAML, "db")
	e := newLive(t)
	systemdRoot(t, e)
	before := e.dump(t)
	e.run.failNext("systemctl is-enabled", 100)
	e.run.failNext("systemctl enable --quiet mariadb.service", 1)
	e.run.failNext("systemctl disable --quiet mariadb.service", 1)
	e.run.answer("systemctl show --property=LoadState --value mariadb.service", "not-found\n")
	// The check phase looks before the failure; have it pass, as when the
	// package was removed while the apply ran.
	e.a.Run = &checkPasses{fakeRunner: e.run}
	_, err := e.a.Apply(context.Background(), db)
	if err == nil || !strings.Contains(err.Error(), "everything was rolled back") {
		t.Fatalf("apply: %v", err)
	}
	if got := e.dump(t); got != before {
		t.Errorf("the host changed:\n%s", got)
	}
	if got := e.run.ran("systemctl disable --quiet mariadb.service"); len(got) != 0 {
		t.Errorf("the rollback tried to disable a unit that is not there: %q", got)
	}
}

// checkPasses answers the check phase's unit look-ups as present, and
// hands everything else to the fake runner.
type checkPasses struct {
	*fakeRunner
	checked bool
}

func (c *checkPasses) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	if name == "systemctl" && len(args) > 0 && args[0] == "show" && !c.checked {
		if args[len(args)-1] == "mariadb.service" {
			c.checked = true
		}
		return []byte("loaded\n"), nil
	}
	return c.fakeRunner.Run(ctx, stdin, name, args...)
}

// TestRollbackAtBoot: an apply a reboot left unconfirmed is undone as the
// host boots: the files and the firewall of the confirmed apply before it
// come back, the units it enabled are disabled without a reload each (one
// daemon-reload at the end), and nothing that does not run yet (daemons,
// the WireGuard interface) is reloaded, restarted or stopped.
func TestRollbackAtBoot(t *testing.T) {
	pl := newPlanner(t)
	old := pl.plan(noService(t), "web")
	web := pl.plan(siteYAML(t, "public_tcp: [80, 443]", "public_tcp: [80, 443, 8443]"), "web")
	e := newLive(t)
	systemdRoot(t, e)
	mustApply(t, e.a, old) // no confirm window: kept
	files := testenv.TreeDump(t, e.root)
	ruleset := testenv.MustRun(t, "nft", "list", "ruleset")
	e.a.Window = time.Minute
	mustApply(t, e.a, web)
	if testenv.TreeDump(t, e.root) == files {
		t.Fatal("the second apply changed no file")
	}
	// The reboot: no table is loaded, and the interface is gone.
	testenv.MustRun(t, "nft", "flush", "ruleset")
	calls := len(e.run.calls)
	jr, err := e.a.RollbackAtBoot(context.Background())
	if err != nil || jr.Node != "web" {
		t.Fatalf("rollback at boot: %v %+v", err, jr)
	}
	if got := testenv.TreeDump(t, e.root); got != files {
		t.Errorf("files after the rollback at boot:\n%s", testenv.DiffLines(files, got))
	}
	if got := testenv.MustRun(t, "nft", "list", "ruleset"); got != ruleset {
		t.Errorf("ruleset after the rollback at boot:\n%s", testenv.DiffLines(ruleset, got))
	}
	for _, c := range e.run.calls[calls:] {
		if strings.Contains(c, "reload-or-restart") || strings.HasPrefix(c, "systemctl restart") || strings.HasPrefix(c, "systemctl stop") ||
			(strings.HasPrefix(c, "systemctl disable") && !strings.Contains(c, "--no-reload")) {
			t.Errorf("at boot the rollback ran %q", c)
		}
	}
	if jr, _ := e.a.Pending(); jr != nil {
		t.Errorf("the journal is still pending: %+v", jr)
	}
	if _, err := e.a.RollbackAtBoot(context.Background()); !errors.Is(err, ErrNothingPending) {
		t.Errorf("a second boot: %v, want ErrNothingPending", err)
	}
}

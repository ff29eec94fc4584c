package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/state"
	"ztwizard/steps/testenv"
)

// testNow is the clock every test plan is built at.
var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// exampleAuthority is the example site's authority on a fresh store.
func exampleAuthority(t *testing.T) *authority.Authority {
	t.Helper()
	store, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := store.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	return &authority.Authority{Store: store, Site: steps.Example(), Now: func() time.Time { return testNow }}
}

// examplePlan is node's plan in the example site, its host key signed.
func examplePlan(t *testing.T, a *authority.Authority, node string) (*steps.Plan, *HostKey) {
	t.Helper()
	sec, err := a.Secrets(node)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := NewHostKey("root@" + node)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := a.SignHost(node, hk.Key, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	sec.HostCert = []byte(signed.Line)
	plan, err := steps.BuildPlan(a.Site, node, sec, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return plan, hk
}

// need fails the test when a tool is missing (make test installs them all).
func need(t *testing.T, tools ...string) {
	t.Helper()
	testenv.Need(t, tools...)
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path string, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

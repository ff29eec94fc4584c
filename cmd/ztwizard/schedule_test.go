package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/monitor"
	"ztwizard/steps/testenv"
)

// ztwEnv runs the real binary in dir with extra environment.
func ztwEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "TZ=UTC", "ZTWIZARD_STATE="), env...)
	stdout, stderr, err := testenv.RunCmd(context.Background(), testenv.CmdTimeout, cmd)
	code, err := testenv.ExitCode(err)
	if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout, stderr}
}

// The CA host with an encrypted key: status says it cannot refresh
// unattended and by when; `ca schedule` encrypts the passphrase with
// systemd-creds, writes units systemd accepts and enables the timer; the
// service's own ExecStart, given the credential the way systemd hands it
// over (0440 in $CREDENTIALS_DIRECTORY), signs a CRL; status is then green.
func TestCASchedule(t *testing.T) {
	testenv.Need(t, "systemd-creds", "systemd-analyze", "systemctl")
	dir, st := workdir(t)
	root := filepath.Join(dir, "root")
	// A credential secret of the test's own, not the machine's.
	env := []string{"SYSTEMD_CREDENTIAL_SECRET=" + filepath.Join(dir, "credential.secret")}
	os.WriteFile(filepath.Join(dir, "pass"), []byte("s3cret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "wrong"), []byte("guess\n"), 0o600)
	must(t, dir, "ca", "init", "--state", st, "--passphrase-file", "pass")

	status := func() (monitor.Report, result) {
		r := ztw(t, dir, "status", "--json", "--state", st, "--root", root)
		var rep monitor.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("status --json: %v\n%s%s", err, r.stdout, r.stderr)
		}
		return rep, r
	}
	rep, r := status()
	if r.code != 1 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].What, "cannot be re-signed unattended") {
		t.Fatalf("before schedule: exit %d, %+v", r.code, rep)
	}
	var crlNext time.Time
	for _, it := range rep.Items {
		if it.Kind == "crl" {
			crlNext = it.NotAfter
		}
	}
	if crlNext.IsZero() || !rep.Problems[0].Deadline.Equal(crlNext) {
		t.Fatalf("deadline %v, want the CRL's nextUpdate %v", rep.Problems[0].Deadline, crlNext)
	}

	// A wrong passphrase writes nothing.
	if r := ztwEnv(t, dir, env, "ca", "schedule", "--state", st, "--root", root, "--passphrase-file", "wrong"); r.code != 2 {
		t.Fatalf("wrong passphrase: %+v", r)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("a refused schedule wrote %s: %v", root, err)
	}

	// This CA host is also a node: it has the site's CRL installed.
	nodeCRL := filepath.Join(root, steps.CRLPath)
	os.MkdirAll(filepath.Dir(nodeCRL), 0o755)
	os.WriteFile(nodeCRL, readFile(t, filepath.Join(st, "ca/crl.pem")), 0o644)
	if r := ztwEnv(t, dir, env, "ca", "schedule", "--state", st, "--root", root, "--passphrase-file", "pass"); r.code != 0 {
		t.Fatalf("schedule: %+v", r)
	}
	cred := filepath.Join(root, steps.PassphraseCredentialPath)
	if fi, err := os.Stat(cred); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credential: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(cred); strings.Contains(string(data), "s3cret") {
		t.Fatal("the credential holds the passphrase in clear")
	}
	if err := exec.Command("systemd-creds", "decrypt", "--name="+steps.PassphraseCredential, cred, "-").Run(); err == nil {
		t.Fatal("the credential decrypts without its host secret")
	}
	c := exec.Command("systemd-creds", "decrypt", "--name="+steps.PassphraseCredential, cred, "-")
	c.Env = append(os.Environ(), env...)
	if out, err := c.Output(); err != nil || string(out) != "s3cret\n" {
		t.Fatalf("round trip: %q %v", out, err)
	}
	for _, timer := range []string{steps.CACRLTimer, steps.StatusTimer} {
		if _, err := os.Lstat(filepath.Join(root, steps.SystemdDir, "timers.target.wants", timer)); err != nil {
			t.Fatalf("%s not enabled: %v", timer, err)
		}
	}
	if data := readFile(t, filepath.Join(root, steps.SystemdDir, steps.StatusUnit)); !strings.Contains(string(data), "status --state "+st+" --prometheus "+steps.TextfilePath) {
		t.Fatalf("%s does not write the CA's metrics:\n%s", steps.StatusUnit, data)
	}

	// systemd accepts the units; the ExecStart points at a real binary.
	unitDir := t.TempDir()
	var paths []string
	var execStart string
	for _, u := range []string{steps.CACRLUnit, steps.CACRLTimer, steps.StatusUnit, steps.StatusTimer} {
		data, err := os.ReadFile(filepath.Join(root, steps.SystemdDir, u))
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindSubmatch(data); m != nil && u == steps.CACRLUnit {
			execStart = string(m[1])
		}
		p := filepath.Join(unitDir, u)
		os.WriteFile(p, []byte(strings.ReplaceAll(string(data), steps.BinaryPath, bin)), 0o644)
		paths = append(paths, p)
	}
	if !strings.Contains(execStart, "--passphrase-file %d/"+steps.PassphraseCredential) || !strings.Contains(execStart, "--out "+steps.CRLPath) {
		t.Fatalf("ExecStart does not read the credential or write the node's CRL: %s", execStart)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// Run the service's ExecStart as systemd would: the credential
	// decrypted into $CREDENTIALS_DIRECTORY, 0440 (an ACL mask), %d expanded.
	creds := filepath.Join(t.TempDir(), "creds")
	os.Mkdir(creds, 0o500)
	os.WriteFile(filepath.Join(creds, steps.PassphraseCredential), []byte("s3cret\n"), 0o440)
	os.Chmod(filepath.Join(creds, steps.PassphraseCredential), 0o440)
	args := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(execStart, "%d", creds), " "+steps.CRLPath, " "+nodeCRL))
	if args[0] != steps.BinaryPath {
		t.Fatalf("ExecStart runs %s", args[0])
	}
	credEnv := []string{"CREDENTIALS_DIRECTORY=" + creds}
	if r := ztwEnv(t, dir, credEnv, args[1:]...); r.code != 0 || !strings.Contains(r.stdout, "not due") {
		t.Fatalf("the service's ExecStart: %+v", r)
	}
	// The same minus --if-due: the passphrase from the credential signs.
	signArgs := slicesDelete(args[1:], "--if-due")
	if r := ztwEnv(t, dir, credEnv, signArgs...); r.code != 0 || !strings.Contains(r.stdout, "CRL signed") {
		t.Fatalf("signing with the credential: %+v", r)
	}
	if !bytes.Equal(readFile(t, nodeCRL), readFile(t, filepath.Join(st, "ca/crl.pem"))) {
		t.Fatal("the node's CRL is not the one just signed")
	}
	// Outside $CREDENTIALS_DIRECTORY a 0440 passphrase file is still refused.
	if r := ztw(t, dir, signArgs...); r.code != 2 || !strings.Contains(r.stderr, "lets group or others read it") {
		t.Fatalf("0440 outside the credentials folder: %+v", r)
	}
	// Inside it, one others may read is refused too.
	os.Chmod(filepath.Join(creds, steps.PassphraseCredential), 0o444)
	if r := ztwEnv(t, dir, credEnv, signArgs...); r.code != 2 {
		t.Fatalf("0444 in the credentials folder: %+v", r)
	}

	if rep, r := status(); r.code != 0 || len(rep.Problems) != 0 {
		t.Fatalf("after schedule: exit %d, %+v", r.code, rep)
	}
	// Drop the credential: status turns 1 again.
	os.Remove(cred)
	if rep, r := status(); r.code != 1 || len(rep.Problems) != 1 {
		t.Fatalf("without the credential: exit %d, %+v", r.code, rep)
	}
}

func slicesDelete(args []string, drop string) []string {
	var out []string
	for _, a := range args {
		if a != drop {
			out = append(out, a)
		}
	}
	return out
}

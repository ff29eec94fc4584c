package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestUnitsVerify has systemd check every unit a plan installs: it must
// print nothing at all (no unknown key, no bad value, no missing command).
func TestUnitsVerify(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is required (package systemd): %v", err)
	}
	site := Example()
	files, units, err := UnitFiles(site, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 8 {
		t.Fatalf("web should get 8 unit files (firewall, boot rollback, wg device, first boot, status service and timer, CRL service and timer), got %d", len(files))
	}
	dir := t.TempDir()
	var paths []string
	for _, f := range files {
		// The commands must exist for verify: point ztwizard's at a real
		// executable, keep nft's (installed with nftables).
		content := strings.ReplaceAll(string(f.Content), BinaryPath, "/bin/true")
		p := filepath.Join(dir, filepath.Base(f.Path))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	enabled := map[string]bool{}
	for _, u := range units {
		enabled[u.Name] = u.Enable
	}
	if !enabled[FirewallUnit] || !enabled[CRLTimer] || !enabled["nginx.service"] || !enabled[BootRollbackUnit] || !enabled[StatusTimer] {
		t.Fatalf("web must enable the firewall, the boot rollback, the CRL timer, the status timer and nginx: %+v", units)
	}
	for _, f := range files {
		// Once `ca schedule` set up the CA host's refresh, the node's stands down.
		if f.Path == SystemdDir+"/"+CRLUnit && !strings.Contains(string(f.Content), "ConditionPathExists=!"+SystemdDir+"/"+CACRLUnit+"\n") {
			t.Fatalf("%s does not stand down for %s:\n%s", CRLUnit, CACRLUnit, f.Content)
		}
	}
	dbFiles, dbUnits, _ := UnitFiles(site, "db")
	// Every node keeps its expiry metrics current, with or without mTLS.
	if !slices.ContainsFunc(dbUnits, func(u Unit) bool { return u.Name == StatusTimer && u.Enable }) {
		t.Fatalf("db does not enable %s: %+v", StatusTimer, dbUnits)
	}
	for _, f := range dbFiles {
		if f.Path == SystemdDir+"/"+StatusUnit && !strings.Contains(string(f.Content), "--prometheus "+TextfilePath) {
			t.Fatalf("%s does not write %s:\n%s", StatusUnit, TextfilePath, f.Content)
		}
	}
	for _, f := range dbFiles {
		if strings.Contains(f.Path, "crl") {
			t.Fatalf("db serves no mTLS but got %s", f.Path)
		}
	}
}

func TestCRLCheckEvery(t *testing.T) {
	for validity, want := range map[Duration]string{"168h": "360min", "24h": "120min", "2h": "10min"} {
		s := Example().Clone()
		s.CA.CRLValidity = validity
		if got := crlCheckEvery(s); got != want {
			t.Errorf("crl_validity %s: every %s, want %s", validity, got, want)
		}
	}
}

// TestUnitsBootOrder: the units that make a node safe at boot wait for no
// network: the boot rollback runs before the firewall, the network and
// sshd; the mesh interface comes up before network.target without waiting
// for network-online.target.
func TestUnitsBootOrder(t *testing.T) {
	files, _, err := UnitFiles(Example(), "db")
	if err != nil {
		t.Fatal(err)
	}
	content := map[string]string{}
	for _, f := range files {
		content[filepath.Base(f.Path)] = string(f.Content)
	}
	rb := content[BootRollbackUnit]
	for _, want := range []string{"DefaultDependencies=no", "Before=sysinit.target " + FirewallUnit, " ssh.service ", "network-pre.target",
		"ConditionPathExists=" + HostJournalPath, "ExecStart=" + BinaryPath + " rollback --at-boot --state " + DefaultStateDir} {
		if !strings.Contains(rb, want) {
			t.Errorf("%s lacks %q:\n%s", BootRollbackUnit, want, rb)
		}
	}
	for name, c := range content {
		if strings.Contains(c, "network-online.target") {
			t.Errorf("%s waits for network-online.target:\n%s", name, c)
		}
	}
	if wg := content[WGDeviceUnit]; strings.Contains(wg, "ConditionPathExists") || !strings.Contains(wg, "Before=network.target") {
		t.Errorf("%s must run with or without a kernel WireGuard, before network.target:\n%s", WGDeviceUnit, wg)
	}
}

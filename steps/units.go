package steps

import (
	"fmt"
	"path"
)

// BinaryPath is where ztwizard itself lives on a node; its units run it.
const BinaryPath = "/usr/local/bin/ztwizard"

// DefaultStateDir is the state folder of ztwizard run as root.
const DefaultStateDir = "/var/lib/ztwizard"

// Unit names.
const (
	FirewallUnit  = "ztwizard-firewall.service"
	CRLUnit       = "ztwizard-crl.service"
	CRLTimer      = "ztwizard-crl.timer"
	WGDeviceUnit  = "ztwizard-wg@.service"
	FirstBootUnit = "ztwizard-firstboot.service"
	// BootRollbackUnit rolls back, as the host boots, an apply that a
	// reboot left unconfirmed.
	BootRollbackUnit = "ztwizard-boot-rollback.service"
	// StatusUnit writes the expiry metrics; StatusTimer runs it.
	StatusUnit  = "ztwizard-status.service"
	StatusTimer = "ztwizard-status.timer"
)

// TextfilePath is where the status timer writes the expiry metrics: the
// textfile folder of Debian's prometheus-node-exporter.
const TextfilePath = "/var/lib/prometheus/node-exporter/ztwizard.prom"

// HostJournalPath is where the journal of an apply to this host lives in
// the default state folder: while it is there an apply is not confirmed.
const HostJournalPath = DefaultStateDir + "/apply/host/journal.json"

// unitView is what the unit templates see.
type unitView struct {
	Binary, Site, Nftables, CRL string
	State, Journal, Firewall    string
	CAKey                       string // the CA key in the default state folder
	CAUnit                      string // the CA host's own CRL service, once scheduled
	Every                       string // how often the CRL timer looks
	StatusEvery                 string // how often the status timer runs
	CRLBoot, StatusBoot         string // the timers' delays after boot
	Accuracy                    string // the timers' AccuracySec; empty for systemd's default
	StatusSite                  string // the site file status reads, where not the installed one
	Textfile, TextfileDir       string // the metrics file and its folder
}

// UnitFiles returns ztwizard's systemd units for the node and the units the
// plan enables or reloads: the firewall loaded before the network, the CRL
// timer where nginx serves mTLS, the timer that keeps the expiry metrics
// current, the userspace WireGuard device for kernels
// without WireGuard, and the first-boot unit images use.
func UnitFiles(site *Site, node string) ([]File, []Unit, error) {
	v := unitView{Binary: BinaryPath, Site: SiteFilePath, Nftables: NftablesPath, CRL: CRLPath, Every: crlCheckEvery(site),
		State: DefaultStateDir, Journal: HostJournalPath, Firewall: FirewallUnit,
		CAKey: DefaultStateDir + "/ca/ca-key.pem", CAUnit: SystemdDir + "/" + CACRLUnit, Textfile: TextfilePath,
		TextfileDir: path.Dir(TextfilePath), StatusEvery: systemdSpan(site.Timing().Status),
		CRLBoot: bootDelay(site, "2min"), StatusBoot: bootDelay(site, "3min"), Accuracy: timerAccuracy(site)}
	type spec struct {
		name, tmpl string
		enable     bool
	}
	want := []spec{
		{FirewallUnit, "unit-firewall.tmpl", true},
		{BootRollbackUnit, "unit-boot-rollback.tmpl", true},
		{WGDeviceUnit, "unit-wg-device.tmpl", false},
		{FirstBootUnit, "unit-firstboot.tmpl", false},
		{StatusUnit, "unit-status-service.tmpl", false},
		{StatusTimer, "unit-status-timer.tmpl", true},
	}
	hasServices := false
	for _, s := range site.Services {
		hasServices = hasServices || s.Node == node
	}
	if hasServices {
		want = append(want, spec{CRLUnit, "unit-crl-service.tmpl", false}, spec{CRLTimer, "unit-crl-timer.tmpl", true})
	}
	var files []File
	var units []Unit
	for _, w := range want {
		f, err := renderFile(path.Join(SystemdDir, w.name), 0o644, w.tmpl, v)
		if err != nil {
			return nil, nil, fmt.Errorf("unit %s: %w", w.name, err)
		}
		files = append(files, f)
		if w.enable {
			units = append(units, Unit{Name: w.name, Enable: true})
		}
	}
	units = append(units, Unit{Name: "ssh.service", Reload: true, Package: "openssh-server"})
	if hasServices {
		units = append(units, Unit{Name: "nginx.service", Enable: true, Reload: true, Package: "nginx"})
	}
	for _, db := range site.Databases {
		if db.Node != node {
			continue
		}
		// The listen address is read only at start: PostgreSQL's
		// listen_addresses and hba_file, MariaDB's bind-address. A changed
		// pg_hba.conf alone needs only a reload.
		u := Unit{Name: "mariadb.service", Enable: true, Reload: true, Restart: []string{MariaDBConfPath}, Package: "mariadb-server"}
		if db.Engine == EnginePostgreSQL {
			u = Unit{Name: "postgresql.service", Enable: true, Reload: true, Restart: []string{PostgreSQLConfPath}, Package: "postgresql"}
		}
		units = append(units, u)
	}
	return files, units, nil
}

// crlCheckEvery is how often the CRL timer checks whether the CRL is due:
// Timing's CRLCheck (a twelfth of the CRL's validity or an eighteenth of
// the leaves', between 10 minutes and 6 hours, for a real site), so the
// CRL is re-signed well before nextUpdate.
func crlCheckEvery(site *Site) string {
	return systemdSpan(site.Timing().CRLCheck)
}

// bootDelay is OnBootSec of a timer: its production delay, or the test
// timescale's interval.
func bootDelay(site *Site, production string) string {
	if b := site.Timing().Boot; b > 0 {
		return systemdSpan(b)
	}
	return production
}

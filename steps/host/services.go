package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"ztwizard/steps"
)

// stage copies the host's configuration folders (etcDirs, under root) into
// a temporary root, lays the plan's files over them, and points absolute
// paths in the copied configuration at the copy, so a daemon can check the
// new configuration without anything on the host changing.
func stage(root string, files []steps.File, etcDirs ...string) (string, error) {
	tmp, err := os.MkdirTemp("", "ztwizard-stage-")
	if err != nil {
		return "", fmt.Errorf("stage: %w", err)
	}
	for _, d := range etcDirs {
		if err := copyTree(filepath.Join(root, d), filepath.Join(tmp, d)); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	for _, f := range files {
		dst := filepath.Join(tmp, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("stage: %w", err)
		}
		if err := os.WriteFile(dst, f.Content, f.Mode.Perm()); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("stage: %w", err)
		}
	}
	// Point the staged configuration at the staged copy.
	err = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil || bytes.IndexByte(data, 0) >= 0 {
			return err
		}
		out := data
		for _, dir := range append(etcDirs, steps.EtcDir) {
			out = bytes.ReplaceAll(out, []byte(dir+"/"), []byte(tmp+dir+"/"))
		}
		if !bytes.Equal(out, data) {
			return os.WriteFile(p, out, 0o600)
		}
		return nil
	})
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("stage: %w", err)
	}
	return tmp, nil
}

// copyTree copies a folder, keeping symbolic links as links; a missing
// folder copies as nothing.
func copyTree(src, dst string) error {
	if _, err := os.Lstat(src); os.IsNotExist(err) {
		return nil
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil
	})
}

// nginxPID matches nginx's pid directive.
var nginxPID = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^[ \t]*pid[ \t]+[^;]*;`) })

// stagePIDFile points the staged nginx.conf's pid file into the staging
// folder: `nginx -t` creates the pid file it names, and an empty
// /run/nginx.pid would be left on a host where nginx does not run.
func stagePIDFile(conf, pidFile string) error {
	data, err := os.ReadFile(conf)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	if !nginxPID().Match(data) {
		return nil
	}
	data = nginxPID().ReplaceAllLiteral(data, []byte("pid "+pidFile+";"))
	if err := os.WriteFile(conf, data, 0o600); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	return nil
}

// hasFiles tells whether the plan puts anything under dir.
func hasFiles(files []steps.File, dir string) bool {
	for _, f := range files {
		if strings.HasPrefix(f.Path, dir+"/") {
			return true
		}
	}
	return false
}

// check has nginx and sshd check the new configuration in a staging copy,
// and nft check the new ruleset, before anything is touched.
func (a *Applier) check(ctx context.Context, p *steps.Plan, changed map[string]bool) error {
	if err := a.checkUnits(ctx, p); err != nil {
		return err
	}
	touches := func(prefixes ...string) bool {
		for path := range changed {
			for _, pre := range prefixes {
				if strings.HasPrefix(path, pre) {
					return true
				}
			}
		}
		return false
	}
	// The checks are programs that mostly wait (for their start, their
	// files): they run side by side, and the first failure in this order
	// is reported.
	var checks []func() error
	if hasFiles(p.Files, "/etc/nginx") && touches("/etc/nginx/", steps.EtcDir+"/") {
		checks = append(checks, func() error {
			dir, err := stage(a.Root, p.Files, "/etc/nginx")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			conf := filepath.Join(dir, "etc/nginx/nginx.conf")
			if err := stagePIDFile(conf, filepath.Join(dir, "nginx.pid")); err != nil {
				return err
			}
			if out, err := a.Run.Run(ctx, nil, "nginx", "-t", "-q", "-c", conf); err != nil {
				return fmt.Errorf("nginx -t: %w: %s", err, strings.TrimSpace(strings.ReplaceAll(string(out), dir, "")))
			}
			return nil
		})
	}
	if touches("/etc/ssh/") {
		checks = append(checks, func() error {
			dir, err := stage(a.Root, p.Files, "/etc/ssh")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if out, err := a.Run.Run(ctx, nil, "sshd", "-t", "-f", filepath.Join(dir, "etc/ssh/sshd_config")); err != nil {
				return fmt.Errorf("sshd -t: %w: %s", err, strings.TrimSpace(strings.ReplaceAll(string(out), dir, "")))
			}
			return nil
		})
	}
	if p.Firewall != nil {
		checks = append(checks, func() error {
			if out, err := a.Run.Run(ctx, []byte(p.Firewall.Script()), "nft", "-c", "-f", "-"); err != nil {
				return fmt.Errorf("nft -c: %w: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		})
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() { errs[i] = check() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// serviceOwners are the files each daemon reads: a change to one means the
// daemon must read them again.
var serviceOwners = map[string][]string{
	"nginx.service":      {"/etc/nginx/", steps.TLSDir + "/", steps.CACertPath, steps.CRLPath},
	"ssh.service":        {"/etc/ssh/"},
	"mariadb.service":    {"/etc/mysql/"},
	"postgresql.service": {"/etc/postgresql/", steps.EtcDir + "/postgresql/"},
}

// Action is what an apply does to a unit whose files changed.
type Action struct {
	Unit    string `json:"unit"`
	Restart bool   `json:"restart,omitempty"` // a reload cannot apply the change
	Why     string `json:"why,omitempty"`     // the file that needs the restart
}

// String says what the action does, and why for a restart.
func (s Action) String() string {
	if s.Restart {
		return fmt.Sprintf("restart %s (%s changed: a reload cannot apply it)", s.Unit, s.Why)
	}
	return "reload " + s.Unit
}

// serviceActions lists what to do to each unit whose files changed: a
// restart where one of its Restart files changed, else a reload.
func serviceActions(p *steps.Plan, changed map[string]bool) []Action {
	var out []Action
	for _, u := range p.Units {
		if !u.Reload {
			continue
		}
		var act *Action
		for _, file := range sortedKeys(changed) {
			if !matchesAny(file, serviceOwners[u.Name]) {
				continue
			}
			if act == nil {
				act = &Action{Unit: u.Name}
			}
			if slices.Contains(u.Restart, file) && !act.Restart {
				act.Restart, act.Why = true, file
			}
		}
		if act != nil {
			out = append(out, *act)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func matchesAny(path string, prefixes []string) bool {
	for _, pre := range prefixes {
		if path == pre || strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// systemd tells whether systemd runs the host under root.
func systemd(root string) bool {
	_, err := os.Stat(filepath.Join(root, "run/systemd/system"))
	return err == nil
}

// daemonPID reads a daemon's pid file under root and returns the pid when
// that process is running, else 0. A pid file can outlive its daemon, and
// `nginx -t` leaves an empty one behind where nginx does not run.
func daemonPID(root, pidFile string) int {
	data, err := os.ReadFile(filepath.Join(root, pidFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || !Alive(pid) {
		return 0
	}
	return pid
}

// serve reloads (or restarts) a unit so it reads its changed files, and
// tells whether it did: with systemctl where systemd runs, else with the
// daemon's own signal (nginx -s reload, SIGHUP to sshd). A daemon that is
// not running needs nothing (it reads the files when it starts) and is not
// reported as reloaded.
func (a *Applier) serve(ctx context.Context, act Action) (bool, error) {
	if systemd(a.Root) {
		if _, err := a.Run.Run(ctx, nil, "systemctl", "is-active", "--quiet", act.Unit); err != nil {
			return false, nil
		}
		verb := "reload-or-restart"
		if act.Restart {
			verb = "restart"
		}
		if out, err := a.Run.Run(ctx, nil, "systemctl", verb, act.Unit); err != nil {
			return false, fmt.Errorf("%s %s: %w: %s", verb, act.Unit, err, strings.TrimSpace(string(out)))
		}
		return true, nil
	}
	pidFile := map[string]string{"nginx.service": "/run/nginx.pid", "ssh.service": "/run/sshd.pid"}[act.Unit]
	if pidFile == "" {
		return false, nil
	}
	pid := daemonPID(a.Root, pidFile)
	if pid == 0 {
		return false, nil
	}
	var out []byte
	var err error
	if act.Unit == "nginx.service" {
		out, err = a.Run.Run(ctx, nil, "nginx", "-s", "reload")
	} else {
		out, err = a.Run.Run(ctx, nil, "kill", "-HUP", strconv.Itoa(pid))
	}
	if err != nil {
		return false, fmt.Errorf("reload %s: %w: %s", act.Unit, err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// loadState is systemd's LoadState of a unit: "loaded", "not-found", ...
func (a *Applier) loadState(ctx context.Context, unit string) string {
	out, err := a.Run.Run(ctx, nil, "systemctl", "show", "--property=LoadState", "--value", unit)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// checkUnits finds, before anything changes, the units the plan needs that
// this host lacks (a database's engine not installed), naming the package
// to install. Units whose files the plan writes itself are there by then.
func (a *Applier) checkUnits(ctx context.Context, p *steps.Plan) error {
	if !systemd(a.Root) {
		return nil
	}
	writes := map[string]bool{}
	for _, f := range p.Files {
		if strings.HasPrefix(f.Path, steps.SystemdDir+"/") {
			writes[path.Base(f.Path)] = true
		}
	}
	var missing []string
	for _, u := range p.Units {
		if writes[u.Name] || writes[templateOf(u.Name)] {
			continue
		}
		if a.loadState(ctx, u.Name) != "not-found" {
			continue
		}
		msg := u.Name + " is not installed on this host"
		if u.Package != "" {
			msg += fmt.Sprintf(": install the package %s (apt-get install --no-install-recommends %s)", u.Package, u.Package)
		}
		missing = append(missing, msg)
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// templateOf is the template of a unit instance (wg@zt0.service gives
// wg@.service), or "".
func templateOf(unit string) string {
	at := strings.Index(unit, "@")
	if at < 0 {
		return ""
	}
	return unit[:at+1] + path.Ext(unit)
}

// enable makes the plan survive a reboot where systemd runs: the units'
// files are read again and the plan's units enabled. Units it enables go
// into the journal first, so that a rollback disables them again.
func (a *Applier) enable(ctx context.Context, p *steps.Plan, jr *Journal, unitsChanged bool) error {
	if !systemd(a.Root) {
		return nil
	}
	units := slices.Clone(p.Units)
	if p.WireGuard.Name != "" {
		// The mesh at boot: ztwizard's unit brings up the kernel's
		// WireGuard, or a userspace device where there is none, without
		// waiting for the network to be online (wg-quick@ does).
		units = append(units, steps.Unit{Name: DeviceUnit(p.WireGuard.Name), Enable: true})
	}
	if unitsChanged {
		if out, err := a.Run.Run(ctx, nil, "systemctl", "daemon-reload"); err != nil {
			return fmt.Errorf("systemctl daemon-reload: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	for _, u := range units {
		if !u.Enable {
			continue
		}
		if _, err := a.Run.Run(ctx, nil, "systemctl", "is-enabled", "--quiet", u.Name); err == nil {
			continue // enabled already: nothing to do, nothing to undo
		}
		jr.Enabled = append(jr.Enabled, u.Name)
		if err := a.journal().save(jr); err != nil {
			return err
		}
		if out, err := a.Run.Run(ctx, nil, "systemctl", "enable", "--quiet", u.Name); err != nil {
			return fmt.Errorf("systemctl enable %s: %w: %s", u.Name, err, strings.TrimSpace(string(out)))
		}
	}
	// An enabled timer runs only once started (at the next boot
	// otherwise): the CRL refresh, the pull and the status timers run from
	// this apply on. Starting one that runs already changes nothing.
	for _, u := range units {
		if !u.Enable || !strings.HasSuffix(u.Name, ".timer") {
			continue
		}
		// An apply run by a unit early in the boot (cloud-init's bootcmd
		// runs before sysinit.target, which every timer requires) must not
		// wait for a job that waits for it (--no-block), nor pull in what
		// sysinit.target wants, the boot rollback among them, while it
		// still holds its journal (ignore-requirements: the timer is
		// ordered after sysinit.target all the same).
		if out, err := a.Run.Run(ctx, nil, "systemctl", "start", u.Name, "--no-block", "--job-mode=ignore-requirements"); err != nil {
			return fmt.Errorf("systemctl start %s: %w: %s", u.Name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

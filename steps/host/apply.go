package host

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/nft"
)

// ErrPending is returned by Apply while an earlier apply waits for
// confirmation.
var ErrPending = errors.New("an apply is waiting for confirmation")

// Applier applies plans to a host, all or nothing, and keeps what it needs
// to undo them in a journal.
type Applier struct {
	Root       string        // where files land: "/" on the live host
	Live       bool          // also the firewall, WireGuard and services (only with Root "/")
	JournalDir string        // the journal folder, inside the state store
	Window     time.Duration // the confirm window; 0: none
	Firewall   firewall
	WG         wgClient
	Run        runner
	Now        func() time.Time
	// Progress reports each step as it runs.
	Progress func(step string)
	// StartDevice starts a userspace WireGuard device for kernels without
	// WireGuard and returns the process it runs in (0 when a service
	// manager runs it).
	StartDevice func(ctx context.Context, name string) (int, error)
	// StartWatchdog starts what rolls the journal back at its deadline
	// even if this process dies, and says how it runs.
	StartWatchdog func(j *Journal) (string, error)
	// StopWatchdog stops it once the apply is confirmed or rolled back.
	StopWatchdog func(j *Journal)

	atBoot bool // rolling back as the host boots: nothing runs yet
}

// Result tells what an apply changed.
type Result struct {
	Files     []string // written or removed
	Firewall  bool
	WireGuard bool
	Reloaded  []string  // units reloaded to read their changed files
	Restarted []string  // units restarted: a reload could not apply the change
	Deadline  time.Time // zero when no confirmation is needed
}

// Changed tells whether the apply changed anything.
func (r *Result) Changed() bool {
	return len(r.Files) > 0 || r.Firewall || r.WireGuard
}

func (a *Applier) journal() journalStore { return journalStore{dir: a.JournalDir} }

func (a *Applier) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a *Applier) progress(format string, args ...any) {
	if a.Progress != nil {
		a.Progress(fmt.Sprintf(format, args...))
	}
}

// changes is what applying a plan would change.
type changes struct {
	write    []steps.File
	remove   []string
	fwNow    *FWSnapshot
	fw       bool
	fwMark   string // the manifest's firewall mark once applied (see firewallMark)
	wgNow    *WGSnapshot
	wgWant   *WGSnapshot
	wg       bool
	resolved map[wgtypes.Key]*net.UDPAddr
}

func (c *changes) paths() map[string]bool {
	out := map[string]bool{}
	for _, f := range c.write {
		out[f.Path] = true
	}
	for _, p := range c.remove {
		out[p] = true
	}
	return out
}

func (c *changes) none() bool { return len(c.write) == 0 && len(c.remove) == 0 && !c.fw && !c.wg }

// diff works out what applying p would change, touching nothing.
func (a *Applier) diff(ctx context.Context, p *steps.Plan) (*changes, error) {
	c := &changes{}
	for _, f := range p.Files {
		dst := filepath.Join(a.Root, f.Path)
		same, err := atomicfile.Equal(dst, f.Content, f.Mode)
		if err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		if !same || !ownedBy(dst, f) {
			c.write = append(c.write, f)
		}
	}
	old, err := a.journal().manifest()
	if err != nil {
		return nil, err
	}
	var stale []string
	if old != nil {
		stale = old.Files
	}
	for _, path := range stale {
		if slices.ContainsFunc(p.Files, func(f steps.File) bool { return f.Path == path }) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(a.Root, path)); err == nil {
			c.remove = append(c.remove, path)
		}
	}
	if !a.Live {
		return c, nil
	}
	if p.Firewall != nil {
		if err := a.diffFirewall(ctx, p.Firewall, old, c); err != nil {
			return nil, err
		}
	}
	if p.WireGuard.Name != "" {
		if c.wgNow, err = wgState(a.WG, p.WireGuard.Name); err != nil {
			return nil, err
		}
		if c.resolved, err = resolve(ctx, p.WireGuard.Resolve); err != nil {
			return nil, err
		}
		c.wgWant = desired(p.WireGuard, c.resolved)
		c.wg = !c.wgNow.same(c.wgWant)
	}
	return c, nil
}

// diffFirewall tells whether the kernel's table differs from t. While
// the manifest's mark holds (the same plan text, the kernel's table with
// the fingerprint it had when it was that text) it does not, and nothing
// is listed; else the table is listed as text (nft) and compared, and
// marked when it is the same.
func (a *Applier) diffFirewall(ctx context.Context, t *nft.Table, m *Manifest, c *changes) error {
	if m != nil && m.Firewall != "" {
		if fp, err := a.Firewall.Fingerprint(ctx); err == nil && firewallMark(t, fp) == m.Firewall {
			c.fwMark = m.Firewall
			return nil
		}
	}
	gen, genErr := a.Firewall.Generation(ctx)
	text, exists, err := a.Firewall.Current(ctx)
	if err != nil {
		return err
	}
	c.fwNow = &FWSnapshot{Existed: exists, Text: text}
	c.fw = !exists || text != t.Text()
	if !c.fw && genErr == nil {
		c.fwMark = a.markAt(ctx, t, gen)
	}
	return nil
}

// resolve looks up the endpoints given as DNS names.
func resolve(ctx context.Context, names map[wgtypes.Key]string) (map[wgtypes.Key]*net.UDPAddr, error) {
	out := map[wgtypes.Key]*net.UDPAddr{}
	for k, hostport := range names {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		host, port, _ := net.SplitHostPort(hostport)
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("wireguard: resolve endpoint %s: %w", hostport, err)
		}
		a, err := net.ResolveUDPAddr("udp", net.JoinHostPort(addrs[0].Unmap().String(), port))
		if err != nil {
			return nil, fmt.Errorf("wireguard: endpoint %s: %w", hostport, err)
		}
		out[k] = a
	}
	return out, nil
}

// Apply makes the host match the plan: checks everything first and touches
// nothing if a check fails; then files, firewall, WireGuard, reloads and
// boot persistence, each step journaled and undone if a later one fails.
// With a confirm window the journal stays until Confirm, and a watchdog
// rolls it back at the deadline. A second apply of the same plan changes
// nothing and sends nothing to the kernel.
func (a *Applier) Apply(ctx context.Context, p *steps.Plan) (*Result, error) {
	js := a.journal()
	pending, err := js.load()
	if err != nil {
		return nil, err
	}
	if pending != nil {
		if pending.Phase == PhaseApplied {
			return nil, fmt.Errorf("%w: node %s until %s; run `ztwizard confirm` or `ztwizard rollback` first",
				ErrPending, pending.Node, pending.Deadline.Format(time.RFC3339))
		}
		if pending.PID != os.Getpid() && running(pending.PID, pending.PIDStart) {
			return nil, fmt.Errorf("another apply (pid %d) is running", pending.PID)
		}
		a.progress("an earlier apply (pid %d) was interrupted: rolling it back", pending.PID)
		if err := a.rollback(ctx, pending, "rolled back after interruption"); err != nil {
			return nil, fmt.Errorf("apply: finish the interrupted apply: %w", err)
		}
	}
	c, err := a.diff(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	res := &Result{}
	if c.none() {
		return res, nil
	}
	if a.Live {
		a.progress("check: nginx -t, sshd -t, nft -c against the new configuration")
		if err := a.check(ctx, p, c.paths()); err != nil {
			return nil, fmt.Errorf("apply: check: %w (nothing was changed)", err)
		}
	}
	jr, err := a.begin(p, c)
	if err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	step := ""
	fail := func(err error) (*Result, error) {
		if rbErr := a.rollback(context.WithoutCancel(ctx), jr, "rolled back after a failed step"); rbErr != nil {
			return nil, fmt.Errorf("apply: %s: %w; rollback also failed: %v", step, err, rbErr)
		}
		return nil, fmt.Errorf("apply: %s: %w (everything was rolled back)", step, err)
	}
	if !jr.Deadline.IsZero() && a.StartWatchdog != nil {
		step = "watchdog"
		desc, err := a.StartWatchdog(jr)
		if err != nil {
			return fail(err)
		}
		jr.Watchdog = desc
		if pid := watchdogPID(jr); pid > 0 {
			jr.WatchdogStart = procStart(pid)
		}
		if err := js.save(jr); err != nil {
			return fail(err)
		}
	}

	step = "files"
	a.progress("files: %d to write, %d to remove", len(c.write), len(c.remove))
	for i := range jr.Files {
		b := &jr.Files[i]
		if err := a.put(p, b.Path); err != nil {
			return fail(err)
		}
		b.Done = true
		res.Files = append(res.Files, b.Path)
	}
	for _, d := range jr.Pruned {
		if err := removeEmptyDir(filepath.Join(a.Root, d)); err != nil {
			return fail(err)
		}
	}
	if err := js.save(jr); err != nil {
		return fail(err)
	}
	if a.Live && c.fw {
		step = "firewall"
		a.progress("firewall: replace table inet ztwizard in one batch (%d rules)", p.Firewall.RuleCount())
		gen, genErr := a.Firewall.Generation(ctx)
		if err := a.Firewall.Replace(ctx, p.Firewall); err != nil {
			return fail(err)
		}
		// The batch is the one commit after gen, unless another came
		// in between: then the table is listed again next time.
		if c.fwMark = ""; genErr == nil {
			c.fwMark = a.markAt(ctx, p.Firewall, gen+1)
		}
		jr.Firewall.Done, res.Firewall = true, true
		if err := js.save(jr); err != nil {
			return fail(err)
		}
	}
	if a.Live && c.wg {
		step = "wireguard"
		if c.wgNow.Existed {
			set, removed := peerChanges(c.wgNow, c.wgWant)
			a.progress("wireguard: %s: %d peers to add or change, %d to remove, of %d", p.WireGuard.Name, set, removed, len(p.WireGuard.Config.Peers))
		} else {
			a.progress("wireguard: %s with %d peers", p.WireGuard.Name, len(p.WireGuard.Config.Peers))
		}
		if err := a.applyWG(ctx, p.WireGuard, c, jr); err != nil {
			return fail(err)
		}
		jr.WG.Done, res.WireGuard = true, true
		if err := js.save(jr); err != nil {
			return fail(err)
		}
	}
	if a.Live {
		step = "reload"
		for _, act := range serviceActions(p, c.paths()) {
			// Journaled first: a rollback makes the daemon read the old
			// files again, even if this process dies right after.
			if act.Restart {
				jr.Restarts = append(jr.Restarts, act.Unit)
			} else {
				jr.Reloads = append(jr.Reloads, act.Unit)
			}
			if err := js.save(jr); err != nil {
				return fail(err)
			}
			done, err := a.serve(ctx, act)
			if err != nil {
				return fail(err)
			}
			switch {
			case !done:
				a.progress("%s: not running, it reads the new files when it starts", act.Unit)
			case act.Restart:
				a.progress("%s", act)
				res.Restarted = append(res.Restarted, act.Unit)
			default:
				a.progress("%s", act)
				res.Reloaded = append(res.Reloaded, act.Unit)
			}
		}
		step = "enable"
		if err := a.enable(ctx, p, jr, hasChanged(c, steps.SystemdDir+"/")); err != nil {
			return fail(err)
		}
	}
	step = "manifest"
	if err := js.saveManifest(a.newManifest(p, jr, c.fwMark)); err != nil {
		return fail(err)
	}
	jr.Phase = PhaseApplied
	if jr.Deadline.IsZero() {
		if err := js.close(jr, "applied"); err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		return res, nil
	}
	if err := js.save(jr); err != nil {
		return fail(err)
	}
	res.Deadline = jr.Deadline
	return res, nil
}

func hasChanged(c *changes, prefix string) bool {
	for p := range c.paths() {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// begin writes the journal: a backup of every file the apply will change
// and the firewall and WireGuard state before it, so that it can be undone
// from here on whatever happens.
func (a *Applier) begin(p *steps.Plan, c *changes) (*Journal, error) {
	js := a.journal()
	id := make([]byte, 6)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	jr := &Journal{ID: a.now().Format("20060102T150405Z") + "-" + hex.EncodeToString(id), Node: p.Node,
		PID: os.Getpid(), PIDStart: procStart(os.Getpid()), Started: a.now(), Phase: PhaseApplying}
	if a.Live && a.Window > 0 {
		jr.Deadline = a.now().Add(a.Window)
	}
	var err error
	if jr.Manifest, err = js.manifest(); err != nil {
		return nil, err
	}
	targets := make([]string, 0, len(c.write)+len(c.remove))
	for _, f := range c.write {
		targets = append(targets, f.Path)
	}
	if jr.Dirs, err = missingDirs(a.Root, targets); err != nil {
		return nil, err
	}
	if jr.Manifest != nil {
		jr.Pruned = a.prunable(p, jr.Manifest.Dirs)
	}
	targets = append(targets, c.remove...)
	for i, path := range targets {
		b := FileBackup{Path: path}
		dst := filepath.Join(a.Root, path)
		fi, err := os.Lstat(dst)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("files: %w", err)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("files: %s is not a regular file", dst)
		default:
			data, err := os.ReadFile(dst)
			if err != nil {
				return nil, fmt.Errorf("files: %w", err)
			}
			b.Existed, b.Mode = true, fi.Mode().Perm()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				b.UID, b.GID = int(st.Uid), int(st.Gid)
			}
			if b.Backup, err = js.backup(jr.ID, i, data); err != nil {
				return nil, err
			}
		}
		jr.Files = append(jr.Files, b)
	}
	if a.Live && c.fw {
		jr.Firewall = c.fwNow
	}
	if a.Live && c.wg {
		jr.WG = c.wgNow
	}
	if err := js.save(jr); err != nil {
		return nil, err
	}
	return jr, nil
}

// missingDirs lists the folders under root that writing paths makes,
// shallowest first.
func missingDirs(root string, paths []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		for d := filepath.Dir(p); d != "/" && d != "." && !seen[d]; d = filepath.Dir(d) {
			_, err := os.Lstat(filepath.Join(root, d))
			if err == nil {
				break
			}
			if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("files: %w", err)
			}
			seen[d] = true
			out = append(out, d)
		}
	}
	sortByDepth(out)
	return out, nil
}

// sortByDepth sorts folders shallowest first.
func sortByDepth(dirs []string) {
	slices.SortFunc(dirs, func(a, b string) int {
		if n := strings.Count(a, "/") - strings.Count(b, "/"); n != 0 {
			return n
		}
		return strings.Compare(a, b)
	})
}

// prunable lists the folders of dirs (made by earlier applies) that are
// there now and that the plan no longer needs, deepest first: the apply
// removes those it leaves empty.
func (a *Applier) prunable(p *steps.Plan, dirs []string) []string {
	var out []string
	for _, d := range dirs {
		if fi, err := os.Lstat(filepath.Join(a.Root, d)); err != nil || !fi.IsDir() {
			continue
		}
		if !slices.ContainsFunc(p.Files, func(f steps.File) bool { return strings.HasPrefix(f.Path, d+"/") }) {
			out = append(out, d)
		}
	}
	sortByDepth(out)
	slices.Reverse(out)
	return out
}

// removeEmptyDir removes a folder if it is empty.
func removeEmptyDir(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
		return nil
	}
	return fmt.Errorf("files: %w", err)
}

// newManifest is the manifest once p is applied: its files, and the
// folders ztwizard made that are still there.
func (a *Applier) newManifest(p *steps.Plan, jr *Journal, fwMark string) *Manifest {
	m := &Manifest{Firewall: fwMark}
	for _, f := range p.Files {
		m.Files = append(m.Files, f.Path)
	}
	dirs := slices.Clone(jr.Dirs)
	if jr.Manifest != nil {
		dirs = append(dirs, jr.Manifest.Dirs...)
	}
	for _, d := range dirs {
		if slices.Contains(m.Dirs, d) {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(a.Root, d)); err == nil && fi.IsDir() {
			m.Dirs = append(m.Dirs, d)
		}
	}
	sortByDepth(m.Dirs)
	return m
}

// put writes the plan's file at path, or removes path when the plan has
// no such file.
func (a *Applier) put(p *steps.Plan, path string) error {
	for _, f := range p.Files {
		if f.Path == path {
			_, err := WriteFiles(a.Root, []steps.File{f})
			return err
		}
	}
	if err := os.Remove(filepath.Join(a.Root, path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("files: %w", err)
	}
	return nil
}

// applyWG makes the WireGuard interface: the link (kernel, or a userspace
// device where the kernel has none), its configuration (ReplacePeers) and
// its addresses.
func (a *Applier) applyWG(ctx context.Context, iface steps.Interface, c *changes, jr *Journal) error {
	if iface.Config.PrivateKey == nil {
		return fmt.Errorf("no WireGuard private key for %s in the plan", iface.Name)
	}
	if !c.wgNow.Existed {
		err := createKernelLink(iface.Name)
		if errors.Is(err, errNoKernelWG) {
			if a.StartDevice == nil {
				return err
			}
			a.progress("wireguard: the kernel has none; starting a userspace device")
			pid, err := a.StartDevice(ctx, iface.Name)
			jr.WG.DevicePID = pid
			if saveErr := a.journal().save(jr); saveErr != nil && err == nil {
				err = saveErr
			}
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	return configure(a.WG, iface, c.resolved, c.wgNow)
}

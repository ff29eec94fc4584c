package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"rsc.io/qr"

	"ztwizard/image"
	"ztwizard/steps"
	"ztwizard/steps/ansible"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
	"ztwizard/tui"
)

// wizardFlags are the wizard command's own flags.
type wizardFlags struct {
	example, empty, accessible, resume bool
}

func wizardCmd(g *globals) *cobra.Command {
	var f wizardFlags
	cmd := &cobra.Command{
		Use:   "wizard",
		Short: "Walk through the site step by step in the terminal",
		Long: `The interactive wizard. It edits the site file (-c) when it exists; otherwise it
asks whether to start from an empty site or the embedded example (--empty and
--example answer before it asks), and Save writes the -c file. It writes only the site file and the state folder
(the draft of your answers, the CA and keys when you review or export) until
you choose Apply and confirm.

Your answers are kept as a draft in the state folder as you go, one per site
file (wizard-draft-NAME-HASH.yaml, 0600), and offered when the wizard starts
again on that file; saving the site removes it.

Without a terminal, with --accessible, or with TERM=dumb, it asks the same
steps as plain line prompts read from standard input, so it works over a
serial console and in scripts; it then saves the site and checks it. There a
draft is resumed only with --resume (or when asked on a terminal), and with
nothing on standard input it just prints the site.`,
		Example: `  ztwizard wizard -c site.yaml
  ztwizard wizard --example --state /tmp/ztwizard-scratch
  ztwizard wizard --empty --accessible -c new.yaml < answers.txt`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWizardWith(cmd, g, f) },
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.example, "example", false, "start from the embedded example site")
	fl.BoolVar(&f.empty, "empty", false, "start from an empty site (defaults only)")
	fl.BoolVar(&f.accessible, "accessible", false, "plain line prompts instead of the full-screen wizard")
	fl.BoolVar(&f.resume, "resume", false, "resume the draft without asking (for scripts)")
	cmd.MarkFlagsMutuallyExclusive("example", "empty")
	return cmd
}

// runWizard is the root command's behaviour: the wizard, on the -c site
// or the example.
func runWizard(cmd *cobra.Command, g *globals, example bool) error {
	return runWizardWith(cmd, g, wizardFlags{example: example})
}

func runWizardWith(cmd *cobra.Command, g *globals, f wizardFlags) error {
	site, source, loaded, err := wizardSite(g, f)
	if err != nil {
		return err
	}
	dir, err := stateDir(g)
	if err != nil {
		return err
	}
	pass, err := passphrase(g)
	if err != nil {
		return err
	}
	in, out := cmd.InOrStdin(), cmd.OutOrStdout()
	accessible := f.accessible || os.Getenv("TERM") == "dumb" || !isTerminal(in) || !isTerminal(out)
	resume := ""
	if f.resume {
		resume = "yes"
	}
	err = tui.Run(cmd.Context(), tui.Options{
		Site: site, SitePath: g.site, Source: source, Loaded: loaded,
		StateDir: dir, Passphrase: pass,
		Actions: &wizardActions{g: g},
		In:      in, Out: out,
		Accessible: accessible, Resume: resume,
		Now: g.now,
		ThisNode: func(s *steps.Site) string {
			for _, n := range s.Nodes {
				if thisHostIs(s, n.Name) {
					return n.Name
				}
			}
			return ""
		},
	})
	if errors.Is(err, tui.ErrInputEnded) {
		return usageError{err}
	}
	return err
}

// wizardSite is the site the wizard starts from: the -c file if it exists
// (even with problems, which the wizard then shows), the example with
// --example, nothing with --empty; nil when there is no file and no flag,
// and the wizard asks.
func wizardSite(g *globals, f wizardFlags) (site *steps.Site, source string, loaded bool, err error) {
	switch {
	case f.empty:
		return tui.Empty(), "from scratch", false, nil
	case f.example:
		return steps.Example(), "the example site", false, nil
	}
	if _, err := os.Stat(g.site); errors.Is(err, fs.ErrNotExist) {
		// The wizard asks whether to start empty or from the example.
		return nil, "", false, nil
	}
	s, err := loadSite(g)
	if err == nil {
		return s, g.site, true, nil
	}
	var list steps.Errors
	if !errors.As(err, &list) {
		return nil, "", false, err
	}
	s, lerr := wizardLenient(g.site)
	if lerr != nil {
		return nil, "", false, err
	}
	return s, g.site, true, nil
}

// wizardLenient reads a site file that decodes but does not validate, so
// the wizard can show its problems where they are fixed. Unknown fields and
// bad YAML are still refused.
func wizardLenient(path string) (*steps.Site, error) {
	return steps.LoadDraft(path)
}

func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// wizardActions does what the wizard's Finish step asks, with the same code
// as the commands.
type wizardActions struct {
	g *globals
	// binary is ztwizard for the Ansible push to run; "": this program.
	binary string
	// self tells whether this host is the node; nil: thisHostIs.
	self func(site *steps.Site, node string) bool
}

// Save writes the site file atomically.
func (a *wizardActions) Save(site *steps.Site, path string) error {
	data, err := site.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// open opens the job's state store, locked, for the job's site.
func (a *wizardActions) open(ctx context.Context, job tui.Job) (*authority.Authority, func(), error) {
	store, err := state.Open(job.StateDir)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.g.lockWait)
	defer cancel()
	unlock, err := store.Lock(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &authority.Authority{Store: store, Site: job.Site, Passphrase: job.Passphrase, Now: a.g.now}, unlock, nil
}

// plan builds the node's plan with the secrets from the job's store.
func (a *wizardActions) plan(ctx context.Context, job tui.Job, node string) (*authority.Authority, *steps.Plan, *steps.Secrets, error) {
	if err := authority.CheckNode(job.Site, node); err != nil {
		return nil, nil, nil, err
	}
	auth, unlock, err := a.open(ctx, job)
	if err != nil {
		return nil, nil, nil, err
	}
	defer unlock()
	sec, err := auth.Secrets(node)
	if err != nil {
		return nil, nil, nil, err
	}
	plan, err := steps.BuildPlan(job.Site, node, sec, a.g.now())
	if err != nil {
		return nil, nil, nil, err
	}
	return auth, plan, sec, nil
}

// Render writes the node's files under dir, as `ztwizard render` does.
func (a *wizardActions) Render(ctx context.Context, job tui.Job, node, dir string) (string, error) {
	if abs, err := filepath.Abs(dir); err != nil || abs == "/" {
		return "", fmt.Errorf("render into %s: the bundle goes into a folder; to change this host use apply", dir)
	}
	_, plan, _, err := a.plan(ctx, job, node)
	if err != nil {
		return "", err
	}
	total, written, err := renderTree(plan, dir)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("Wrote node %s into %s: %d files (%d changed), %d firewall rules, %d WireGuard peers.",
		node, dir, total, written, plan.Firewall.RuleCount(), len(plan.WireGuard.Config.Peers)), nil
}

// Review builds the node's plan and tells what the node receives: its
// files, firewall, peers and units, whatever this workstation is (names in
// endpoints stay names: nothing is looked up). Only when this host is that
// node, and the wizard runs as root, does it add what applying it here
// would change, as `ztwizard plan` does; a failure there is told beside the
// plan, not instead of it.
func (a *wizardActions) Review(ctx context.Context, job tui.Job, node string) (string, error) {
	_, plan, sec, err := a.plan(ctx, job, node)
	if err != nil {
		return "", err
	}
	names := map[wgtypes.Key]string{}
	for n, k := range sec.WireGuardPubs {
		names[k] = n
	}
	text := fmt.Sprintf("# What node %s receives\n", node) + wizardPlanText(plan, names)
	self := a.self
	if self == nil {
		self = thisHostIs
	}
	if !self(job.Site, node) {
		return text, nil
	}
	if os.Geteuid() != 0 {
		return text + "\n# This host is node " + node + ": reading it needs root, so what applying changes is not shown.\n", nil
	}
	diff, err := a.hostDiff(ctx, job, plan)
	switch {
	case err != nil:
		return text + "\n# This host is node " + node + ", but it cannot be compared: " + err.Error() + "\n", nil
	case diff == "":
		return text + fmt.Sprintf("\n# This host already matches node %s: applying changes nothing.\n", node), nil
	}
	return text + fmt.Sprintf("\n# What applying node %s to this host changes\n", node) + diff, nil
}

// hostDiff is what applying plan to this host would change.
func (a *wizardActions) hostDiff(ctx context.Context, job tui.Job, plan *steps.Plan) (string, error) {
	ap, closeFn, err := liveApplier(job.StateDir)
	if err != nil {
		return "", err
	}
	defer closeFn()
	return ap.Diff(ctx, plan)
}

// thisHostIs tells whether this host is the site's node: its host name is
// the node's name, or the node's endpoint is one of its addresses.
func thisHostIs(site *steps.Site, node string) bool {
	if h, err := os.Hostname(); err == nil {
		if short, _, _ := strings.Cut(h, "."); short == node {
			return true
		}
	}
	n, ok := site.Node(node)
	if !ok || n.Endpoint == "" {
		return false
	}
	hostPart, _, err := net.SplitHostPort(n.Endpoint)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(hostPart)
	if err != nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == ip.Unmap() {
			return true
		}
	}
	return false
}

// wizardPlanText is a plan as text: its files, its firewall as nft, its
// WireGuard peers and its units. Key material is never shown.
func wizardPlanText(plan *steps.Plan, names map[wgtypes.Key]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Files (%d)\n", len(plan.Files))
	for _, f := range plan.Files {
		owner := ""
		if f.Owner != "" || f.Group != "" {
			owner = " " + f.Owner + ":" + f.Group
		}
		fmt.Fprintf(&b, "+ %s %04o%s\n", f.Path, f.Mode.Perm(), owner)
	}
	fmt.Fprintf(&b, "\n# Firewall: table inet ztwizard, %d rules\n", plan.Firewall.RuleCount())
	b.WriteString(strings.TrimRight(plan.Firewall.Text(), "\n") + "\n")
	fmt.Fprintf(&b, "\n# WireGuard %s", plan.WireGuard.Name)
	for _, p := range plan.WireGuard.Addresses {
		fmt.Fprintf(&b, " %s", p)
	}
	b.WriteString("\n")
	var peers []string
	for _, p := range plan.WireGuard.Config.Peers {
		var ips []string
		for _, ip := range p.AllowedIPs {
			ips = append(ips, ip.String())
		}
		who := p.PublicKey.String()[:8] + "…"
		if n, ok := names[p.PublicKey]; ok {
			who = n + " (" + who + ")"
		}
		line := fmt.Sprintf("peer %s allowed %s", who, strings.Join(ips, " "))
		if name, ok := plan.WireGuard.Resolve[p.PublicKey]; ok {
			line += " endpoint " + name + " (looked up when applied)"
		} else if p.Endpoint != nil {
			line += " endpoint " + p.Endpoint.String()
		}
		peers = append(peers, line)
	}
	sort.Strings(peers)
	for _, p := range peers {
		b.WriteString(p + "\n")
	}
	b.WriteString("\n# Units\n")
	for _, u := range plan.Units {
		var what []string
		if u.Enable {
			what = append(what, "enable")
		}
		if u.Reload {
			what = append(what, "reload")
		}
		fmt.Fprintf(&b, "%s %s\n", u.Name, strings.Join(what, ", "))
	}
	return b.String()
}

// wizardQRPayload is a wg-quick file without comments and blank lines, for a
// smaller QR code.
func wizardQRPayload(conf []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(conf), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// Apply is not there yet in this build.
func (a *wizardActions) Apply(ctx context.Context, job tui.Job, node string, progress func(string)) (time.Time, error) {
	if os.Geteuid() != 0 {
		return time.Time{}, fmt.Errorf("applying to this host needs root: run the wizard as root, or `sudo ztwizard apply -c site.yaml --node %s`", node)
	}
	_, plan, _, err := a.plan(ctx, job, node)
	if err != nil {
		return time.Time{}, err
	}
	auth, unlock, err := a.open(ctx, job)
	if err != nil {
		return time.Time{}, err
	}
	defer unlock()
	ap, closeFn, err := liveApplier(auth.Store.Dir())
	if err != nil {
		return time.Time{}, err
	}
	defer closeFn()
	ap.Window = wizardConfirmWindow
	ap.Progress = progress
	res, err := ap.Apply(ctx, plan)
	if err != nil {
		return time.Time{}, err
	}
	if !res.Changed() {
		progress("no changes: this host already matches node " + node)
	}
	return res.Deadline, nil
}

// wizardConfirmWindow is how long an apply from the wizard waits for its
// Confirm before it rolls back.
const wizardConfirmWindow = 120 * time.Second

// Confirm is not there yet in this build.
func (a *wizardActions) Confirm(ctx context.Context, job tui.Job) error {
	auth, unlock, err := a.open(ctx, job)
	if err != nil {
		return err
	}
	defer unlock()
	ap, closeFn, err := liveApplier(auth.Store.Dir())
	if err != nil {
		return err
	}
	defer closeFn()
	_, err = ap.Confirm()
	return err
}

// Bake bakes an image as `ztwizard bake` does, with the form's choices.
func (a *wizardActions) Bake(ctx context.Context, job tui.Job, node string, o tui.BakeOptions, progress func(string, int, int)) error {
	size := int64(2 << 30)
	if o.Size != "" {
		var err error
		if size, err = parseSize(o.Size); err != nil {
			return fmt.Errorf("disk size %q: %w", o.Size, err)
		}
	}
	network := image.Network{Address: o.Address, Gateway: o.Gateway, DNS: o.DNS}
	if _, err := image.NetworkFiles(network); err != nil {
		return err
	}
	golden, out := o.Golden, o.Out
	if os.Geteuid() != 0 {
		return fmt.Errorf("baking needs root (the root filesystem keeps its files' owners): run the wizard as root, or `sudo ztwizard bake`")
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	auth, unlock, err := a.open(ctx, job)
	if err != nil {
		return err
	}
	var content *image.Content
	if golden {
		content, err = goldenContentFrom(auth)
	} else {
		content, err = nodeContentFrom(auth, node, network, a.g.now())
	}
	unlock()
	if err != nil {
		return err
	}
	spec, err := bakeSpec(content, bakeChoices{suite: image.DefaultSuite, cache: image.DefaultCache(), size: size,
		epoch: epoch, out: out, format: image.FormatQcow2})
	if err != nil {
		return err
	}
	spec.Progress = func(stage string, done, total int64) {
		if progress != nil {
			progress(stage, int(done), int(total))
		}
	}
	_, err = image.Bake(ctx, spec)
	return err
}

// Unlock checks the job's passphrase against the CA key in the state
// folder, reading only.
func (a *wizardActions) Unlock(_ context.Context, job tui.Job) error {
	if _, err := os.Stat(job.StateDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	// Read only: the folder may be one just typed, not yet a store.
	store, err := state.OpenDryRun(job.StateDir)
	if err != nil {
		return err
	}
	keyPEM, err := store.ReadFile(authority.CAKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = pki.DecodeKeyPEM(keyPEM, job.Passphrase)
	switch {
	case errors.Is(err, pki.ErrPassphraseRequired):
		return fmt.Errorf("%w: the CA key in %s is encrypted; type its passphrase", tui.ErrLocked, store.Dir())
	case errors.Is(err, pki.ErrBadPassphrase):
		return fmt.Errorf("%w: wrong passphrase for the CA key in %s", tui.ErrLocked, store.Dir())
	case err != nil:
		return fmt.Errorf("the CA key in %s: %w", store.Dir(), err)
	}
	return nil
}

// Keys makes the X.509 and SSH CA keys (or opens them, which checks the
// passphrase and encrypts keys made without one).
func (a *wizardActions) Keys(ctx context.Context, job tui.Job) (string, error) {
	auth, unlock, err := a.open(ctx, job)
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, _, err := auth.CA(); err != nil {
		return "", err
	}
	for _, kind := range []string{authority.KindSSHUserCA, authority.KindSSHHostCA} {
		if _, _, err := auth.SSHCA(kind); err != nil {
			return "", err
		}
	}
	how := "unencrypted (0600)"
	if len(job.Passphrase) > 0 {
		how = "encrypted with the passphrase"
	}
	return fmt.Sprintf("The CA keys are in %s, %s.", auth.Store.Dir(), how), nil
}

// Export writes a node's standalone wg-quick file (its key inline, for a
// phone or a laptop) and its QR code as a PNG, or a client's bundle (certificate, key, CA and a
// PKCS#12 with its password beside it) into dir.
func (a *wizardActions) Export(ctx context.Context, job tui.Job, what, name, dir string) (tui.Exported, error) {
	switch what {
	case "node":
		if err := authority.CheckNode(job.Site, name); err != nil {
			return tui.Exported{}, err
		}
		auth, unlock, err := a.open(ctx, job)
		if err != nil {
			return tui.Exported{}, err
		}
		defer unlock()
		sec, err := auth.Secrets(name)
		if err != nil {
			return tui.Exported{}, err
		}
		conf, err := steps.WGQuickStandalone(job.Site, name, sec)
		if err != nil {
			return tui.Exported{}, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return tui.Exported{}, fmt.Errorf("export: %w", err)
		}
		path := filepath.Join(dir, name+".conf")
		if err := atomicfile.WriteFile(path, conf, 0o600); err != nil {
			return tui.Exported{}, fmt.Errorf("export: %w", err)
		}
		code, err := qr.Encode(string(wizardQRPayload(conf)), qr.L)
		if err != nil {
			return tui.Exported{}, fmt.Errorf("export: QR code: %w", err)
		}
		code.Scale = 8
		png := filepath.Join(dir, name+".png")
		if err := atomicfile.WriteFile(png, code.PNG(), 0o600); err != nil {
			return tui.Exported{}, fmt.Errorf("export: %w", err)
		}
		return tui.Exported{Files: []string{path, png}, WireGuard: conf}, nil
	case "client":
		if _, ok := job.Site.Client(name); !ok {
			return tui.Exported{}, fmt.Errorf("export: unknown client %q", name)
		}
		auth, unlock, err := a.open(ctx, job)
		if err != nil {
			return tui.Exported{}, err
		}
		defer unlock()
		issued, err := auth.Current(authority.KindClient, name)
		if err != nil {
			return tui.Exported{}, err
		}
		if issued == nil || issued.Cert.NotAfter.Before(a.g.now().Add(authority.WarnWithin)) {
			if issued, err = auth.Issue(name, ""); err != nil {
				return tui.Exported{}, err
			}
		}
		var log bytes.Buffer
		if err := writeBundle(&log, &session{site: job.Site, auth: auth}, issued, dir, ""); err != nil {
			return tui.Exported{}, err
		}
		var files []string
		sc := bufio.NewScanner(&log)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "wrote "); ok {
				files = append(files, p)
			}
		}
		return tui.Exported{Files: files}, nil
	}
	return tui.Exported{}, fmt.Errorf("export: %q is neither a node nor a client", what)
}

// Ansible writes the Ansible push as `ztwizard ansible -c SITE --out DIR
// --user USER --identity IDENTITY` does, with the wizard's state folder
// and --passphrase-file: the same options, checks and files.
func (a *wizardActions) Ansible(ctx context.Context, job tui.Job, o tui.AnsibleOptions) (tui.Exported, error) {
	if len(job.Passphrase) > 0 && a.g.passphraseFile == "" {
		return tui.Exported{}, errors.New("ansible: the CA keys are encrypted and the playbook needs their passphrase in a file: " +
			"start the wizard with --passphrase-file, or run `ztwizard ansible --passphrase-file FILE`")
	}
	user := o.User
	if user == "" {
		user = "root"
	}
	opts := ansible.Options{User: user, Identity: o.Identity, Binary: a.binary, Site: o.SitePath,
		State: job.StateDir, PassphraseFile: a.g.passphraseFile}
	if err := opts.Resolve(); err != nil {
		return tui.Exported{}, err
	}
	if err := opts.Check(job.Site); err != nil {
		return tui.Exported{}, onScreen(err)
	}
	auth, unlock, err := a.open(ctx, job)
	if err != nil {
		return tui.Exported{}, err
	}
	defer unlock()
	files, err := writeAnsible(auth, job.Site, o.Dir, opts)
	if err != nil {
		return tui.Exported{}, err
	}
	return tui.Exported{Files: files}, nil
}

// onScreen is an Ansible option's refusal named by the push form's labels
// rather than by the command's flags.
func onScreen(err error) error {
	msg := err.Error()
	for _, l := range [][2]string{{"--user ", "SSH user "}, {"--identity ", "Identity file "}, {"--certificate ", "Identity file's certificate "}} {
		if rest, ok := strings.CutPrefix(msg, l[0]); ok {
			return errors.New(l[1] + rest)
		}
	}
	return err
}

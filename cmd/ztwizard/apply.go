package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/host"
	"ztwizard/steps/state"
)

// applyFlags are what plan and apply share.
type applyFlags struct {
	node, root            string
	bundle, caFingerprint string
	dry                   bool // plan, apply --dry-run: nothing is written to the state store
}

func (f *applyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.node, "node", "", "the node this host is")
	cmd.Flags().StringVar(&f.bundle, "bundle", "", "this node's signed bundle `FILE` (N.ztb from ztwizard bundle): no site file, no CA state needed")
	cmd.Flags().StringVar(&f.caFingerprint, "ca-fingerprint", "", "with --bundle, the first time: the CA to trust, `SHA256:HEX` (ztwizard ca fingerprint on the CA host)")
	cmd.Flags().StringVar(&f.root, "root", "/", "apply the files into this folder only: no firewall, WireGuard or services (images use this)")
}

// journalDir is where an apply to root keeps its journal: one folder for
// the live host, one per --root folder.
func journalDir(state, root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", usagef("--root %s: %v", root, err)
	}
	if abs == "/" {
		return filepath.Join(state, "apply", "host"), nil
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(state, "apply", "root-"+hex.EncodeToString(sum[:6])), nil
}

// prepare loads the site, builds the node's plan from the state store and
// makes the applier for --root.
func prepare(cmd *cobra.Command, g *globals, f *applyFlags) (*session, *steps.Plan, *host.Applier, func(), error) {
	if f.bundle != "" {
		return prepareBundle(cmd, g, f)
	}
	if f.caFingerprint != "" {
		return nil, nil, nil, nil, usagef("--ca-fingerprint goes with --bundle")
	}
	// Building a plan makes much short-lived garbage (a 1,000-node site,
	// its plan); a collection at every 100% of heap growth costs a run more
	// than the memory it saves.
	debug.SetGCPercent(400)
	if f.node == "" {
		return nil, nil, nil, nil, usagef("--node is required: the node this host is")
	}
	live := filepath.Clean(f.root) == "/"
	if live && os.Geteuid() != 0 {
		return nil, nil, nil, nil, usagef("applying to this host needs root; use --root DIR to write the files into a folder")
	}
	s, err := openSession(cmd.Context(), g, !f.dry, f.dry, func(site *steps.Site) error { return authority.CheckNode(site, f.node) })
	if err != nil {
		return nil, nil, nil, nil, err
	}
	fail := func(err error) (*session, *steps.Plan, *host.Applier, func(), error) {
		s.close()
		return nil, nil, nil, nil, err
	}
	// A host that holds the CA signs its own host key: record it, and the
	// plan carries its host certificate and sshd's HostCertificate line.
	if err := s.auth.KeysHere(f.node); err != nil {
		return fail(err)
	}
	if err := recordOwnHostKey(s.auth, f.node, f.root); err != nil {
		return fail(err)
	}
	sec, err := s.auth.Secrets(f.node)
	if err != nil {
		return fail(err)
	}
	if f.dry {
		printPending(cmd.OutOrStdout(), s.auth.Store)
	}
	siteYAML, err := s.auth.SiteYAML(s.source)
	if err != nil {
		return fail(err)
	}
	plan, err := steps.NewBuilderYAML(s.site, siteYAML).Plan(f.node, sec, g.now())
	if err != nil {
		return fail(err)
	}
	jdir, err := journalDir(s.auth.Store.Dir(), f.root)
	if err != nil {
		return fail(err)
	}
	if !live {
		return s, plan, host.NewFiles(f.root, jdir), func() {}, nil
	}
	a, closeFn, err := liveApplier(s.auth.Store.Dir())
	if err != nil {
		return fail(err)
	}
	return s, plan, a, closeFn, nil
}

// liveApplier is the applier for this host with the state store in state:
// its journal there, userspace WireGuard and the watchdog started as the
// commands start them.
func liveApplier(state string) (*host.Applier, func(), error) {
	jdir, err := journalDir(state, "/")
	if err != nil {
		return nil, nil, err
	}
	a, closeFn, err := host.NewLive("/", jdir)
	if err != nil {
		return nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("apply: %w", err)
	}
	a.UseProcesses(self, state)
	return a, closeFn, nil
}

func planCmd(g *globals) *cobra.Command {
	f := &applyFlags{dry: true}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change on this host, as a diff",
		Long: `Builds the node's plan and compares it with what the host has now: a unified
diff of every file (private keys named, never shown), of the firewall as nft
text, and of the WireGuard interface's peers. Changes nothing.

With --bundle the plan comes from the node's signed bundle, checked first
(the CA's signature, this node, a serial above the last applied): no site
file and no CA state are needed.`,
		Example: `  ztwizard plan -c site.yaml --node db
  ztwizard plan --bundle db.ztb --ca-fingerprint SHA256:3f2a...
  ztwizard plan -c site.yaml --node db --root /mnt/image`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, plan, a, closeFn, err := prepare(cmd, g, f)
			if err != nil {
				return err
			}
			defer s.close()
			defer closeFn()
			return printDiff(cmd.Context(), cmd.OutOrStdout(), a, plan)
		},
	}
	f.add(cmd)
	return cmd
}

// printPending says what a dry run would have written to the state store.
func printPending(w io.Writer, store *state.Store) {
	changes, _ := store.Pending()
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(w, "state %s: nothing written; keys and certificates of this plan were made in memory only. apply would:\n", store.Dir())
	for _, c := range changes {
		fmt.Fprintf(w, "  %-6s %s\n", c.Action, c.Path)
	}
}

func printDiff(ctx context.Context, w io.Writer, a *host.Applier, plan *steps.Plan) error {
	diff, err := a.Diff(ctx, plan)
	if err != nil {
		return err
	}
	if diff == "" {
		fmt.Fprintf(w, "node %s: no changes\n", plan.Node)
		return nil
	}
	fmt.Fprint(w, diff)
	return nil
}

func applyCmd(g *globals) *cobra.Command {
	f := &applyFlags{}
	var confirm time.Duration
	var noConfirm, dryRun bool
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply a node's plan to this host, all or nothing, with confirm-or-rollback",
		Long: `Checks everything first (nginx -t, sshd -t against the new files in a staging
folder, nft -c on the ruleset) and touches nothing if a check fails. Then
writes the files atomically (keeping the old versions), replaces the inet
ztwizard table in one netlink batch, sets up WireGuard (kernel, or ztwizard's
own userspace device) with wgctrl, reloads nginx and sshd, and enables the
units so it all survives a reboot. A failed step undoes the ones before it.

With --confirm (the default, 120s, when run from an SSH session) everything
reverts at the deadline unless ` + "`ztwizard confirm`" + ` is run, ideally from a new
SSH connection; a watchdog that outlives this process and its session does it.
apply does not wait for that: it returns as soon as the changes are in and the
watchdog is armed (exit 0), so a script or Ansible can run ` + "`ztwizard confirm`" + `
over a new connection; ` + "`ztwizard status`" + ` shows the pending deadline.

With --bundle (on a node of a fleet) the plan comes from the node's signed
bundle, and no site file, state of the CA or CA key is needed. The bundle is
checked before anything is touched: signed by the CA this node trusts (the
first time, by the CA with --ca-fingerprint), for this node, with a serial
above the last one applied here (an older bundle could bring back revoked
material). A bundle refused for any of these is bad input (exit 2). Once
applied, its serial and CA are kept in the state folder (node/bundle.json).`,
		Example: `  ztwizard apply -c site.yaml --node db
  ztwizard apply --bundle db.ztb --ca-fingerprint SHA256:3f2a... --confirm 120s
  ztwizard apply -c site.yaml --node db --confirm 60s
  ztwizard apply -c site.yaml --node db --dry-run
  ztwizard apply -c site.yaml --node db --root ./image-root`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyFlagsAgree(cmd, f, confirm, noConfirm, dryRun); err != nil {
				return err
			}
			if !cmd.Flags().Changed("confirm") && os.Getenv("SSH_CONNECTION") == "" && os.Getenv("SSH_CLIENT") == "" {
				confirm = 0
			}
			if noConfirm {
				confirm = 0
			}
			f.dry = dryRun
			s, plan, a, closeFn, err := prepare(cmd, g, f)
			if err != nil {
				return err
			}
			defer s.close()
			defer closeFn()
			w := cmd.OutOrStdout()
			if dryRun {
				return printDiff(cmd.Context(), w, a, plan)
			}
			a.Window = confirm
			a.Progress = func(step string) { fmt.Fprintln(w, "  "+step) }
			// An SSH session that drops hangs up on its processes: the
			// apply goes on to its end (or its rollback), and the
			// watchdog decides the rest, as for any apply not confirmed.
			signal.Ignore(syscall.SIGHUP)
			fmt.Fprintf(w, "applying node %s to %s\n", plan.Node, f.root)
			res, err := a.Apply(cmd.Context(), plan)
			if err != nil {
				if errors.Is(err, host.ErrPending) {
					return usageError{err}
				}
				return err
			}
			if s.applied != nil {
				if err := s.applied(); err != nil {
					return err
				}
			}
			if !res.Changed() {
				fmt.Fprintf(w, "node %s: no changes\n", plan.Node)
				return nil
			}
			fmt.Fprintf(w, "applied: %d files, firewall %v, wireguard %v, reloaded %s", len(res.Files),
				yesNo(res.Firewall), yesNo(res.WireGuard), orNone(res.Reloaded))
			if len(res.Restarted) > 0 {
				fmt.Fprintf(w, ", restarted %s", orNone(res.Restarted))
			}
			fmt.Fprintln(w)
			if !res.Deadline.IsZero() {
				fmt.Fprintf(w, "confirm before %s with `ztwizard confirm` (from a new SSH connection), or it all rolls back\n",
					res.Deadline.Local().Format(time.RFC3339))
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&confirm, "confirm", 120*time.Second, "roll everything back after this `duration` unless ztwizard confirm runs (default when run over SSH)")
	cmd.Flags().BoolVar(&noConfirm, "no-confirm", false, "keep the changes without waiting for confirmation")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change (as plan does) and stop")
	return cmd
}

// applyFlagsAgree refuses apply's flags that contradict each other, or
// that would be silently ignored: a confirm window where nothing waits
// for confirmation.
func applyFlagsAgree(cmd *cobra.Command, f *applyFlags, confirm time.Duration, noConfirm, dryRun bool) error {
	if !cmd.Flags().Changed("confirm") {
		return nil
	}
	switch {
	case confirm <= 0:
		return usagef("--confirm %s: the window must be positive (--no-confirm keeps the changes without one)", confirm)
	case noConfirm:
		return usagef("--confirm %s and --no-confirm contradict each other: give one", confirm)
	case dryRun:
		return usagef("--confirm %s with --dry-run: a dry run changes nothing, so there is nothing to confirm", confirm)
	case filepath.Clean(f.root) != "/":
		return usagef("--confirm %s with --root %s: only an apply to this host (--root /) waits for confirmation", confirm, f.root)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "replaced"
	}
	return "unchanged"
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, ", ")
}

func confirmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "confirm",
		Short: "Keep the pending apply (run it from a new SSH connection)",
		Long: `Keeps the changes of the pending apply and stops its watchdog. Run it from a
new SSH connection: if that connection works, the new firewall and sshd
configuration let you in.`,
		Example: `  ztwizard confirm`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, unlock, err := journalOnly(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer unlock()
			jr, err := a.Confirm()
			if errors.Is(err, host.ErrNothingPending) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "confirmed the apply of node %s\n", jr.Node)
			return nil
		},
	}
}

// watchdogLockWait bounds how long a watchdog waits for the state lock at
// its deadline.
const watchdogLockWait = 24 * time.Hour

func rollbackCmd(g *globals) *cobra.Command {
	var watchdog, at string
	var atBoot bool
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Undo the pending apply now",
		Long: `Undoes the pending apply at once: files, firewall, WireGuard and reloads, as
they were. Also finishes an apply that was killed half-way.

With --at-boot (what the ztwizard-boot-rollback unit runs early at boot,
before the firewall, the network and sshd) an apply that a reboot left
unconfirmed is rolled back before anything reads its files; with nothing
pending it does nothing.`,
		Example: `  ztwizard rollback
  ztwizard rollback --at-boot   # as the boot unit does`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watchdog != "" {
				deadline, err := time.Parse(time.RFC3339Nano, at)
				if err != nil {
					return usagef("--at %q: %v", at, err)
				}
				if err := host.WaitDeadline(cmd.Context(), deadline); err != nil {
					return err
				}
				// Whatever holds the state now (the apply itself, still
				// running), the rollback must come once it is done.
				g.lockWait = max(g.lockWait, watchdogLockWait)
			}
			a, unlock, err := journalOnly(cmd.Context(), g)
			if atBoot && errors.Is(err, host.ErrNothingPending) {
				return nil
			}
			if err != nil {
				return err
			}
			defer unlock()
			a.Progress = func(step string) { fmt.Fprintln(cmd.OutOrStdout(), "  "+step) }
			if atBoot {
				jr, err := a.RollbackAtBoot(cmd.Context())
				if errors.Is(err, host.ErrNothingPending) {
					return nil
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ztwizard: rolled back the apply of node %s at boot: it was not confirmed before the reboot\n", jr.Node)
				return nil
			}
			jr, err := a.Rollback(cmd.Context(), watchdog)
			if errors.Is(err, host.ErrNothingPending) {
				if watchdog != "" {
					return nil // confirmed, or rolled back already
				}
				return usageError{err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled back the apply of node %s\n", jr.Node)
			return nil
		},
	}
	cmd.Flags().BoolVar(&atBoot, "at-boot", false, "roll back an apply a reboot left unconfirmed (the boot unit runs this); nothing pending is no error")
	cmd.Flags().StringVar(&watchdog, "watchdog", "", "")
	cmd.Flags().StringVar(&at, "at", "", "")
	_ = cmd.Flags().MarkHidden("watchdog")
	_ = cmd.Flags().MarkHidden("at")
	return cmd
}

// journalOnly opens the live host's journal under the state lock: confirm
// and rollback need no site.
func journalOnly(ctx context.Context, g *globals) (*host.Applier, func(), error) {
	dir, err := stateDir(g)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, usageError{fmt.Errorf("%w (no state at %s)", host.ErrNothingPending, dir)}
	}
	s, err := openStore(ctx, g, dir)
	if err != nil {
		return nil, nil, err
	}
	jdir, _ := journalDir(dir, "/")
	a, closeFn, err := host.NewLive("/", jdir)
	if err != nil {
		s.unlock()
		return nil, nil, err
	}
	return a, func() { closeFn(); s.unlock() }, nil
}

// openStore takes the state lock of dir, for commands that need no site.
func openStore(ctx context.Context, g *globals, dir string) (*session, error) {
	store, err := state.Open(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.lockWait)
	defer cancel()
	unlock, err := store.Lock(ctx)
	if err != nil {
		return nil, err
	}
	warnRepairs(store)
	return &session{unlock: unlock}, nil
}

// recordOwnHostKey records the SSH Ed25519 host key found under root as
// node's, when there is one.
func recordOwnHostKey(a *authority.Authority, node, root string) error {
	data, err := os.ReadFile(filepath.Join(root, steps.SSHHostKeyPath+".pub"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	pub, err := authority.ParseAuthorizedKey(data)
	if err != nil {
		return fmt.Errorf("host key %s.pub: %w", steps.SSHHostKeyPath, err)
	}
	return a.RecordHostKey(node, pub)
}

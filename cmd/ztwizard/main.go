// Command ztwizard secures Linux hosts the zero-trust way: a private CA and
// mutual TLS in front of internal services, a WireGuard mesh, SSH
// certificates and a default-drop nftables firewall, all from one site file.
//
// Exit codes: 0 done, 1 failed at run time, 2 bad input (usage or site).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/charmbracelet/fang"
	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/state"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1
	exitBadInput = 2
)

// usageError marks a bad command line (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode maps an error to the process's exit code.
func exitCode(err error) int {
	var siteErrs steps.Errors
	var usage usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &usage), errors.As(err, &siteErrs), errors.Is(err, authority.ErrInput):
		return exitBadInput
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires ", "required flag", "if any flags in the group", "none of the others can be"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, " "+p) {
			return exitBadInput
		}
	}
	return exitFailed
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if styled() {
		root, failed := newRoot(), error(nil)
		printOwnErrors(root, &failed)
		if err = fang.Execute(ctx, root, fang.WithErrorHandler(printError), fang.WithoutManpage()); err == nil {
			err = failed
		}
	} else {
		err = executePlain(ctx, newRoot())
	}
	os.Exit(exitCode(err))
}

// printError writes the reason: one line for most errors; site errors one
// per problem, like a compiler.
func printError(w io.Writer, _ fang.Styles, err error) {
	var siteErrs steps.Errors
	if errors.As(err, &siteErrs) {
		for _, e := range siteErrs {
			fmt.Fprintln(w, e.Error())
		}
		fmt.Fprintf(w, "ztwizard: %d problem(s) in the site\n", len(siteErrs))
		return
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if exitCode(err) == exitBadInput && !strings.Contains(msg, "--help") {
		var usage usageError
		if errors.As(err, &usage) || !errors.Is(err, authority.ErrInput) {
			msg += " (see --help)"
		}
	}
	fmt.Fprintln(w, "ztwizard: "+msg)
}

// globals are the flags every command shares.
type globals struct {
	state          string
	passphraseFile string
	site           string
	lockWait       time.Duration
	now            func() time.Time
}

func newRoot() *cobra.Command {
	g := &globals{now: time.Now}
	root := &cobra.Command{
		Use:   "ztwizard",
		Short: "Secure Linux hosts the zero-trust way, from one site file",
		Long: `ztwizard turns one site file (site.yaml) into secured hosts: a private CA and
mutual TLS in front of internal HTTP services, a WireGuard mesh where each node
talks only to its peers, SSH certificates with short validity and named
principals, and a default-drop nftables firewall.

Run it without arguments on a terminal for the interactive wizard.`,
		Example: `  ztwizard validate -c site.yaml
  ztwizard ca issue --name service-worker-01 --out ./bundle
  ztwizard ssh sign --user alice --key ~/.ssh/id_ed25519.pub
  ztwizard status`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWizard(cmd, g, false)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.lockWait < 0 {
			return usagef("--lock-wait %s: must not be negative (0 does not wait)", g.lockWait)
		}
		return nil
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.state, "state", "", "state folder holding the CA, keys and records (default /var/lib/ztwizard as root, else the XDG data dir; env ZTWIZARD_STATE)")
	pf.StringVar(&g.passphraseFile, "passphrase-file", "", "file whose first line encrypts the CA private keys at rest")
	pf.StringVarP(&g.site, "config", "c", "site.yaml", "the site file")
	pf.DurationVar(&g.lockWait, "lock-wait", 30*time.Second, "how long to wait for another ztwizard to release the state folder")
	root.AddCommand(wizardCmd(g), validateCmd(g), renderCmd(g), caCmd(g), sshCmd(g), statusCmd(g), planCmd(g), applyCmd(g), confirmCmd(g), rollbackCmd(g), wgCmd(g), bakeCmd(g), seedCmd(g), firstbootCmd(g), selfcheckCmd(g))
	root.AddCommand(ansibleCmd(g))
	root.AddCommand(nodeCmd(g), bundleCmd(g))
	return root
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

func validateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check a site file and report every problem at once",
		Long: `Reads the site file strictly (an unknown field is an error), fills in defaults,
and checks it: names, networks, addresses, references, ports, durations.
Every problem is printed with its line and field path; exit code 2 if any.
A site with ca.test_timescale (for tests only) may have validities of minutes
and gets timers scaled down with them; validate warns of it.`,
		Example: `  ztwizard validate -c site.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			site, err := loadSite(g)
			if err != nil {
				return err
			}
			// The addresses render and apply give: the state folder's
			// record keeps them as nodes come and go.
			dir, err := stateDir(g)
			if err != nil {
				return err
			}
			record, err := authority.RecordedAddresses(dir)
			if err != nil {
				return err
			}
			addrs, err := site.Addresses(record)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: site %q is valid: %d node(s), %d service(s), %d database(s), %d client(s), %d SSH user(s)\n",
				g.site, site.Site, len(site.Nodes), len(site.Services), len(site.Databases), len(site.Clients), len(site.SSH.Users))
			for _, n := range site.Nodes {
				fmt.Fprintf(out, "  node %-20s mesh %s\n", n.Name, addrs[n.Name])
			}
			if site.CA.TestTimescale {
				fmt.Fprintln(cmd.ErrOrStderr(), steps.TestTimescaleWarning(site))
			}
			return nil
		},
	}
}

// loadSite reads the -c site file; a missing or bad file is bad input.
func loadSite(g *globals) (*steps.Site, error) {
	site, _, err := loadSiteSource(g)
	return site, err
}

// loadSiteSource is loadSite that also returns the bytes the site was
// parsed from.
func loadSiteSource(g *globals) (*steps.Site, []byte, error) {
	site, source, _, err := loadSiteCached(g)
	return site, source, err
}

// loadSiteCached is loadSiteSource that takes the site this program parsed
// from the same bytes before, where the state folder has it (see
// authority.CachedParse), and says whether it did.
func loadSiteCached(g *globals) (site *steps.Site, source []byte, cached bool, err error) {
	source, err = steps.ReadSource(g.site)
	if err == nil {
		if dir, derr := stateDir(g); derr == nil {
			if site, ok := authority.CachedParse(dir, source); ok {
				return site, source, true, nil
			}
		}
		site, err = steps.Parse(source, g.site)
	}
	if err != nil {
		var list steps.Errors
		if errors.As(err, &list) {
			return nil, nil, false, err
		}
		return nil, nil, false, usageError{fmt.Errorf("-c %s: %w", g.site, unwrapPath(err))}
	}
	return site, source, false, nil
}

// unwrapPath drops the *PathError's repeated file name.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot %s: %w", pe.Op, pe.Err)
	}
	return err
}

// stateDir resolves --state, ZTWIZARD_STATE and the defaults.
func stateDir(g *globals) (string, error) {
	if g.state != "" {
		return g.state, nil
	}
	if env := os.Getenv("ZTWIZARD_STATE"); env != "" {
		return env, nil
	}
	if os.Geteuid() == 0 {
		return steps.DefaultStateDir, nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "ztwizard"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", usagef("no --state given and no home folder: %v", err)
	}
	return filepath.Join(home, ".local", "share", "ztwizard"), nil
}

// maxPassphrase bounds the first line of --passphrase-file.
const maxPassphrase = 1024

// passphrase reads --passphrase-file: its first line, which must not be
// empty, nor a key's or certificate's first line.
func passphrase(g *globals) ([]byte, error) {
	if g.passphraseFile == "" {
		return nil, nil
	}
	f, err := os.Open(g.passphraseFile)
	if err != nil {
		return nil, usagef("--passphrase-file %s: %v", g.passphraseFile, unwrapPath(err))
	}
	defer f.Close()
	// Like ssh with a private key: a secret others may read is no secret.
	// systemd's credential files (in $CREDENTIALS_DIRECTORY, a folder only
	// the service can enter) may show group bits (0440: an ACL's mask).
	loose := fs.FileMode(0o077)
	if inCredentials(g.passphraseFile) {
		loose = 0o007
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&loose != 0 {
		return nil, usagef("--passphrase-file %s: mode %04o lets group or others read it; make it 0600 (chmod 600 %s)",
			g.passphraseFile, uint32(fi.Mode().Perm()), g.passphraseFile)
	}
	// Only the first line counts: read no more than a long one.
	data, err := io.ReadAll(io.LimitReader(f, maxPassphrase+2))
	if err != nil {
		return nil, usagef("--passphrase-file %s: %v", g.passphraseFile, unwrapPath(err))
	}
	line, _, found := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	switch {
	case line == "":
		return nil, usagef("--passphrase-file %s: the first line is empty", g.passphraseFile)
	case !found && len(data) > maxPassphrase:
		return nil, usagef("--passphrase-file %s: the first line is longer than %d bytes: not a passphrase", g.passphraseFile, maxPassphrase)
	case strings.HasPrefix(line, "-----BEGIN ") || strings.HasPrefix(line, "ssh-") || strings.HasPrefix(line, "ecdsa-sha2-"):
		// A key or certificate given by mistake (ca/ca-key.pem for
		// the passphrase): its first line would encrypt the CA key.
		return nil, usagef("--passphrase-file %s: holds a key or certificate, not a passphrase", g.passphraseFile)
	}
	return []byte(line), nil
}

// inCredentials tells whether file is in systemd's credentials folder
// for this service, $CREDENTIALS_DIRECTORY.
func inCredentials(file string) bool {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || !filepath.IsAbs(dir) {
		return false
	}
	abs, err := filepath.Abs(file)
	return err == nil && filepath.Dir(abs) == filepath.Clean(dir)
}

// session is what a command that uses the state store needs: the site, the
// store, the passphrase and, for writers, the lock.
type session struct {
	site   *steps.Site
	source []byte // the site file as read
	auth   *authority.Authority
	unlock func()
	// applied, when set, runs once an apply succeeded (--bundle: record
	// the bundle the node now holds).
	applied func() error
}

func (s *session) close() {
	if s.unlock != nil {
		s.unlock()
	}
}

// open loads the site and passphrase and opens the store. check runs before
// the store is touched, so bad input writes nothing. Writers take the lock,
// waiting up to --lock-wait for another ztwizard to finish.
func open(ctx context.Context, g *globals, write bool, check func(*steps.Site) error) (*session, error) {
	return openSession(ctx, g, write, false, check)
}

// openSession is open that, with dry, opens the store as a dry run
// (state.OpenDryRun): nothing is created or changed in it, and a missing
// store reads as empty.
func openSession(ctx context.Context, g *globals, write, dry bool, check func(*steps.Site) error) (*session, error) {
	site, source, cached, err := loadSiteCached(g)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(site); err != nil {
			return nil, err
		}
	}
	pass, err := passphrase(g)
	if err != nil {
		return nil, err
	}
	dir, err := stateDir(g)
	if err != nil {
		return nil, err
	}
	if !write && !dry {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, usagef("no state at %s yet: run `ztwizard ca init` first, or pass --state", dir)
		}
	}
	opener := state.Open
	if dry {
		opener = state.OpenDryRun
	}
	store, err := opener(dir)
	if err != nil {
		return nil, err
	}
	s := &session{site: site, source: source, auth: &authority.Authority{Store: store, Site: site, Passphrase: pass, Now: g.now}}
	if write || dry {
		ctx, cancel := context.WithTimeout(ctx, g.lockWait)
		defer cancel()
		unlock, err := store.Lock(ctx)
		if err != nil {
			return nil, err
		}
		s.unlock = unlock
		// Recorded before anything can change the site in memory.
		if !cached {
			if err := s.auth.RecordParsed(source); err != nil {
				unlock()
				return nil, err
			}
		}
	}
	warnRepairs(store)
	return s, nil
}

// warnRepairs says on stderr what opening the store put right.
func warnRepairs(store *state.Store) {
	for _, r := range store.Repairs() {
		fmt.Fprintf(os.Stderr, "ztwizard: state %s: %s\n", store.Dir(), r)
	}
}

// Command ztwizard secures Linux hosts the zero-trust way: a private CA and
// mutual TLS in front of internal services, a WireGuard mesh, SSH
// certificates and a default-drop nftables firewall, all from one site file.
//
// Exit codes: 0 done, 1 failed at run time, 2 bad input (usage or site).
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/fang"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/host"
	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
	"ztwizard/tui"
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
	err := fang.Execute(ctx, newRoot(), fang.WithErrorHandler(printError), fang.WithoutManpage())
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
	pf := root.PersistentFlags()
	pf.StringVar(&g.state, "state", "", "state folder holding the CA, keys and records (default /var/lib/ztwizard as root, else the XDG data dir; env ZTWIZARD_STATE)")
	pf.StringVar(&g.passphraseFile, "passphrase-file", "", "file whose first line encrypts the CA private keys at rest")
	pf.StringVarP(&g.site, "config", "c", "site.yaml", "the site file")
	pf.DurationVar(&g.lockWait, "lock-wait", 30*time.Second, "how long to wait for another ztwizard to release the state folder")
	root.AddCommand(wizardCmd(g), validateCmd(g), renderCmd(g), caCmd(g), sshCmd(g), statusCmd(g))
	return root
}

// noArgs refuses positional arguments with a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
	}
	return nil
}

func wizardCmd(g *globals) *cobra.Command {
	var example bool
	cmd := &cobra.Command{
		Use:   "wizard",
		Short: "Walk through the site step by step in the terminal",
		Long: `The interactive wizard. It opens the site file (-c), or the embedded example
site when there is none, and writes only into the state folder until told to
apply. Without a terminal it prints plain text.`,
		Example: `  ztwizard wizard -c site.yaml
  ztwizard wizard --example --state /tmp/ztwizard-scratch`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runWizard(cmd, g, example) },
	}
	cmd.Flags().BoolVar(&example, "example", false, "start from the embedded example site")
	return cmd
}

func runWizard(cmd *cobra.Command, g *globals, example bool) error {
	var site *steps.Site
	name := "example site"
	if !example {
		if _, err := os.Stat(g.site); err == nil {
			s, err := loadSite(g)
			if err != nil {
				return err
			}
			site, name = s, g.site
		}
	}
	if site == nil {
		site = steps.Example()
	}
	dir, err := stateDir(g)
	if err != nil {
		return err
	}
	return tui.Run(cmd.Context(), tui.Options{Site: site, SiteName: name, StateDir: dir,
		In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), Interactive: isTerminal(cmd.InOrStdin()) && isTerminal(cmd.OutOrStdout())})
}

func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

func validateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check a site file and report every problem at once",
		Long: `Reads the site file strictly (an unknown field is an error), fills in defaults,
and checks it: names, networks, addresses, references, ports, durations.
Every problem is printed with its line and field path; exit code 2 if any.`,
		Example: `  ztwizard validate -c site.yaml`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			site, err := loadSite(g)
			if err != nil {
				return err
			}
			addrs, err := site.Addresses(nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: site %q is valid: %d node(s), %d service(s), %d database(s), %d client(s), %d SSH user(s)\n",
				g.site, site.Site, len(site.Nodes), len(site.Services), len(site.Databases), len(site.Clients), len(site.SSH.Users))
			for _, n := range site.Nodes {
				fmt.Fprintf(out, "  node %-20s mesh %s\n", n.Name, addrs[n.Name])
			}
			return nil
		},
	}
}

// loadSite reads the -c site file; a missing or bad file is bad input.
func loadSite(g *globals) (*steps.Site, error) {
	site, err := steps.Load(g.site)
	if err != nil {
		var list steps.Errors
		if errors.As(err, &list) {
			return nil, err
		}
		return nil, usageError{fmt.Errorf("-c %s: %w", g.site, unwrapPath(err))}
	}
	return site, nil
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
		return "/var/lib/ztwizard", nil
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

// passphrase reads --passphrase-file: its first line, which must not be empty.
func passphrase(g *globals) ([]byte, error) {
	if g.passphraseFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(g.passphraseFile)
	if err != nil {
		return nil, usagef("--passphrase-file %s: %v", g.passphraseFile, unwrapPath(err))
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, usagef("--passphrase-file %s: the first line is empty", g.passphraseFile)
	}
	return []byte(line), nil
}

// session is what a command that uses the state store needs: the site, the
// store, the passphrase and, for writers, the lock.
type session struct {
	site   *steps.Site
	auth   *authority.Authority
	unlock func()
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
	site, err := loadSite(g)
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
	if !write {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, usagef("no state at %s yet: run `ztwizard ca init` first, or pass --state", dir)
		}
	}
	store, err := state.Open(dir)
	if err != nil {
		return nil, err
	}
	s := &session{site: site, auth: &authority.Authority{Store: store, Site: site, Passphrase: pass, Now: g.now}}
	if write {
		ctx, cancel := context.WithTimeout(ctx, g.lockWait)
		defer cancel()
		unlock, err := store.Lock(ctx)
		if err != nil {
			return nil, err
		}
		s.unlock = unlock
	}
	return s, nil
}

func renderCmd(g *globals) *cobra.Command {
	var node, out string
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Write a node's files into a folder, as they would land under /",
		Long: `Builds the node's plan and writes its files under --out as they would land
under / (etc/nginx/conf.d/..., etc/ssh/sshd_config.d/..., etc/wireguard/...),
plus nftables.nft (the firewall, for nft -f) and the node's wg-quick file at
the top. Certificates and keys come from the state folder, made there when
missing. Nothing outside --out and the state folder is touched. The folder
holds private keys: it is made 0700.`,
		Example: `  ztwizard render -c site.yaml --node web --out ./web
  nft -c -f ./web/nftables.nft`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" || out == "" {
				return usagef("--node and --out are required")
			}
			if abs, err := filepath.Abs(out); err != nil || abs == "/" {
				return usagef("--out %s: render writes into a folder; to change this host use apply", out)
			}
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error { return authority.CheckNode(site, node) })
			if err != nil {
				return err
			}
			defer s.close()
			sec, err := s.auth.Secrets(node)
			if err != nil {
				return err
			}
			plan, err := steps.BuildPlan(s.site, node, sec, g.now())
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return fmt.Errorf("render: %w", err)
			}
			if err := os.Chmod(out, 0o700); err != nil {
				return fmt.Errorf("render: %w", err)
			}
			extra := []steps.File{{Path: "/nftables.nft", Mode: 0o644, Content: []byte(plan.Firewall.Script())}}
			for _, f := range plan.Files {
				if f.Path == filepath.Join(steps.WireGuardConfDir, plan.WireGuard.Name+".conf") {
					extra = append(extra, steps.File{Path: "/" + plan.WireGuard.Name + ".conf", Mode: f.Mode, Content: f.Content})
				}
			}
			written, err := host.WriteFiles(out, append(extra, plan.Files...))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rendered node %s into %s: %d files (%d changed), %d firewall rules, %d WireGuard peers\n",
				node, out, len(plan.Files)+len(extra), len(written), plan.Firewall.RuleCount(), len(plan.WireGuard.Config.Peers))
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node to render")
	cmd.Flags().StringVar(&out, "out", "", "the folder to write into (made 0700)")
	return cmd
}

func caCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The site's X.509 CA: issue, revoke, publish the CRL, list",
		Long: `The private certificate authority behind mutual TLS. It is created in the
state folder on first use, from the site's ca: section. With --passphrase-file
its private key is stored encrypted (PKCS#8, AES-256).`,
		Args: noArgs,
	}
	cmd.AddCommand(caInitCmd(g), caIssueCmd(g), caRevokeCmd(g), caCRLCmd(g), caListCmd(g))
	return cmd
}

func caInitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "init",
		Short:   "Create the X.509 CA and the SSH user and host CAs (once)",
		Example: `  ztwizard ca init -c site.yaml --passphrase-file /root/ca.pass`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			ca, created, err := s.auth.CA()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "exists"
			if created {
				verb = "created"
			}
			fmt.Fprintf(out, "X.509 CA %s: %s, valid until %s\n  %s\n", verb, ca.Cert.Subject.CommonName,
				ca.Cert.NotAfter.Format(time.RFC3339), s.auth.Store.Path(authority.CACertFile))
			for _, kind := range []string{authority.KindSSHUserCA, authority.KindSSHHostCA} {
				_, pub, err := s.auth.SSHCA(kind)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s %s\n", kind, ssh.FingerprintSHA256(pub))
			}
			return nil
		},
	}
}

func caIssueCmd(g *globals) *cobra.Command {
	var name, out, keyType, p12PassFile string
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate for a client identity or a service",
		Long: `Issues a client certificate (CN = the client's name, O = its organization) for a
name in the site's clients:, or a server certificate (SAN = server_name) for a
name in services:. The key and certificate are kept in the state folder.

With --out DIR it also writes a bundle there: NAME.crt, NAME.key (0600), ca.pem,
and for clients NAME.p12 (PKCS#12, for browsers and curl) whose password is
read from --p12-passphrase-file or made up and written to NAME.p12.pass (0600).`,
		Example: `  ztwizard ca issue --name service-worker-01 --out ./worker
  curl --cert ./worker/service-worker-01.crt --key ./worker/service-worker-01.key \
       --cacert ./worker/ca.pem https://api.internal.example.com/`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usagef("--name is required: a client or service of the site")
			}
			var kind string
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error {
				var err error
				kind, err = authority.CheckIssue(site, name, keyType)
				if err != nil {
					return err
				}
				if p12PassFile != "" {
					if _, err := os.Stat(p12PassFile); err != nil {
						return usagef("--p12-passphrase-file %s: %v", p12PassFile, unwrapPath(err))
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			defer s.close()
			issued, err := s.auth.Issue(name, keyType)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "issued %s certificate for %s: serial %s, valid until %s\n  certificate %s\n  key         %s\n",
				strings.TrimPrefix(kind, "x509-"), name, issued.Record.Serial, issued.Cert.NotAfter.Format(time.RFC3339),
				s.auth.Store.Path(issued.CertFile), s.auth.Store.Path(issued.KeyFile))
			if out == "" {
				return nil
			}
			return writeBundle(w, s, issued, out, p12PassFile)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the client or service to issue for")
	f.StringVar(&out, "out", "", "also write a bundle (certificate, key, CA, PKCS#12) into this folder")
	f.StringVar(&keyType, "key", "", "key type (ecdsa-p256, ecdsa-p384, ed25519, rsa-3072, rsa-4096); default the CA's")
	f.StringVar(&p12PassFile, "p12-passphrase-file", "", "password for the PKCS#12 file (default: a random one, saved beside it)")
	return cmd
}

// writeBundle writes the exported files of one issued certificate.
func writeBundle(w io.Writer, s *session, issued *authority.Issued, dir, p12PassFile string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	ca, _, err := s.auth.CA()
	if err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKeyPEM(issued.Key, nil)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	name := issued.Record.Name
	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	files := []file{
		{name + ".crt", pki.EncodeCertPEM(issued.Cert), 0o644},
		{name + ".key", keyPEM, 0o600},
		{"ca.pem", pki.EncodeCertPEM(ca.Cert), 0o644},
	}
	if issued.Record.Kind == authority.KindClient {
		pass, generated, err := p12Password(p12PassFile)
		if err != nil {
			return err
		}
		p12, err := pki.PKCS12(issued.Cert, issued.Key, []*x509.Certificate{ca.Cert}, pass)
		if err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		files = append(files, file{name + ".p12", p12, 0o600})
		if generated {
			files = append(files, file{name + ".p12.pass", []byte(pass + "\n"), 0o600})
		}
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := atomicfile.WriteFile(path, f.data, f.mode); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		fmt.Fprintf(w, "  wrote %s\n", path)
	}
	return nil
}

// p12Password reads the PKCS#12 password or makes one up.
func p12Password(file string) (pass string, generated bool, err error) {
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", false, usagef("--p12-passphrase-file %s: %v", file, unwrapPath(err))
		}
		line, _, _ := strings.Cut(string(data), "\n")
		return strings.TrimSuffix(line, "\r"), false, nil
	}
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", false, fmt.Errorf("bundle: password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), true, nil
}

func caRevokeCmd(g *globals) *cobra.Command {
	var name, serial string
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke certificates and publish a new CRL",
		Long: `Revokes every unrevoked certificate of a client or service (--name), or one
certificate by serial (--serial, as ` + "`ca list`" + ` or openssl prints it), then signs a
new CRL. nginx reads the CRL on reload.`,
		Example: `  ztwizard ca revoke --name service-worker-01
  ztwizard ca revoke --serial 5f:3a:...`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (name == "") == (serial == "") {
				return usagef("give exactly one of --name or --serial")
			}
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			done, err := s.auth.Revoke(name, serial)
			if err != nil {
				return err
			}
			printRevoked(cmd.OutOrStdout(), done)
			next, err := s.auth.CRLNextUpdate()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CRL %s, next update %s\n", s.auth.Store.Path(authority.CRLFile), next.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "revoke every certificate of this client or service")
	cmd.Flags().StringVar(&serial, "serial", "", "revoke the certificate with this serial (hex)")
	return cmd
}

func caCRLCmd(g *globals) *cobra.Command {
	var out string
	var ifDue bool
	cmd := &cobra.Command{
		Use:   "crl",
		Short: "Sign a fresh CRL (a timer does this well before nextUpdate)",
		Example: `  ztwizard ca crl
  ztwizard ca crl --if-due --out /etc/ztwizard/crl.pem`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			due := true
			if ifDue {
				if due, err = s.auth.CRLDue(); err != nil {
					return err
				}
			}
			var crl []byte
			if due {
				crl, err = s.auth.CRL()
			} else {
				crl, err = s.auth.Store.ReadFile(authority.CRLFile)
			}
			if err != nil {
				return err
			}
			next, err := s.auth.CRLNextUpdate()
			if err != nil {
				return err
			}
			path := s.auth.Store.Path(authority.CRLFile)
			if out != "" {
				if err := atomicfile.WriteFile(out, crl, 0o644); err != nil {
					return err
				}
				path = out
			}
			verb := "signed"
			if !due {
				verb = "not due, kept"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "CRL %s: %s, next update %s\n", verb, path, next.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "also write the CRL (PEM) to this file")
	cmd.Flags().BoolVar(&ifDue, "if-due", false, "re-sign only when the CRL is within a day (or a quarter of its validity) of nextUpdate")
	return cmd
}

func caListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List every certificate issued, with its state and expiry",
		Example: `  ztwizard ca list`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, false, nil)
			if err != nil {
				return err
			}
			recs, err := s.auth.List()
			if err != nil {
				return err
			}
			now := g.now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tNAME\tSERIAL\tNOT AFTER\tSTATE")
			for _, r := range recs {
				st := "valid"
				switch {
				case r.RevokedAt != nil:
					st = "revoked " + r.RevokedAt.Format(time.DateOnly)
				case !now.Before(r.NotAfter):
					st = "expired"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Name, r.Serial, r.NotAfter.UTC().Format(time.RFC3339), st)
			}
			return tw.Flush()
		},
	}
}

func sshCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh",
		Short: "The SSH user and host CAs: sign keys, revoke into a KRL",
		Long: `SSH certificates instead of static keys: a user's key is signed for the
principals (local accounts) the site gives that user, for a few hours; a host's
key is signed with the host CA so clients trust it through one @cert-authority
line. A certificate without principals is never signed.`,
		Args: noArgs,
	}
	cmd.AddCommand(sshSignCmd(g), sshRevokeCmd(g), sshCACmd(g))
	return cmd
}

func sshSignCmd(g *globals) *cobra.Command {
	var user, host, keyFile, out, principals string
	var validity time.Duration
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Sign a user's or a host's public key",
		Long: `Signs KEY.pub and writes KEY-cert.pub beside it (or --out). For --user the
principals are the site's for that user (or --principals) and the validity
ssh.cert_validity (default 4h); for --host the principals are the node's name,
mesh address and endpoint host, and the validity ca.cert_validity.`,
		Example: `  ztwizard ssh sign --user alice --key ~/.ssh/id_ed25519.pub
  ztwizard ssh sign --user alice --key alice.pub --principals devops --validity 1h
  ztwizard ssh sign --host db --key /etc/ssh/ssh_host_ed25519_key.pub`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (user == "") == (host == "") {
				return usagef("give exactly one of --user or --host")
			}
			if keyFile == "" {
				return usagef("--key is required: the public key to sign (KEY.pub)")
			}
			if validity < 0 {
				return usagef("--validity %s must be positive", validity)
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				return usagef("--key %s: %v", keyFile, unwrapPath(err))
			}
			pub, err := authority.ParseAuthorizedKey(data)
			if err != nil {
				return fmt.Errorf("--key %s: %w", keyFile, err)
			}
			var extra []string
			if principals != "" {
				extra = strings.Split(principals, ",")
				for _, p := range extra {
					check := sshca.ValidPrincipal
					if host != "" {
						check = sshca.ValidHostname
					}
					if err := check(p); err != nil {
						return usagef("--principals: %v", err)
					}
				}
			}
			if out == "" {
				out = strings.TrimSuffix(keyFile, ".pub") + "-cert.pub"
			}
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error {
				if user != "" {
					return authority.CheckUser(site, user)
				}
				return authority.CheckNode(site, host)
			})
			if err != nil {
				return err
			}
			defer s.close()
			var signed *authority.SSHSigned
			if user != "" {
				signed, err = s.auth.SignUser(user, pub, extra, validity)
			} else {
				signed, err = s.auth.SignHost(host, pub, extra, validity)
			}
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out, []byte(signed.Line), 0o644); err != nil {
				return err
			}
			r := signed.Record
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s: serial %s, principals %s, valid %s to %s\n  %s\n", r.Subject, r.Serial,
				strings.Join(r.Principals, ","), r.NotBefore.Format(time.RFC3339), r.NotAfter.Format(time.RFC3339), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "sign a user key for this SSH user of the site")
	f.StringVar(&host, "host", "", "sign a host key for this node of the site")
	f.StringVar(&keyFile, "key", "", "the public key to sign (KEY.pub)")
	f.StringVar(&out, "out", "", "where to write the certificate (default KEY-cert.pub)")
	f.StringVar(&principals, "principals", "", "comma-separated principals instead of the site's (users); extra host names (hosts)")
	f.DurationVar(&validity, "validity", 0, "how long the certificate is valid (default: the site's)")
	return cmd
}

func sshRevokeCmd(g *globals) *cobra.Command {
	var user, host, certFile string
	var serial uint64
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke SSH certificates into the KRL",
		Long: `Revokes SSH certificates by serial, by certificate file, or all of a user's or
host's, and writes a new OpenSSH KRL (state folder ssh/revoked.krl) that sshd
reads through RevokedKeys.`,
		Example: `  ztwizard ssh revoke --user alice
  ztwizard ssh revoke --cert alice-cert.pub
  ztwizard ssh revoke --serial 17`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			given := 0
			for _, set := range []bool{user != "", host != "", certFile != "", serial != 0} {
				if set {
					given++
				}
			}
			if given != 1 {
				return usagef("give exactly one of --user, --host, --cert or --serial")
			}
			name := user + host
			if certFile != "" {
				data, err := os.ReadFile(certFile)
				if err != nil {
					return usagef("--cert %s: %v", certFile, unwrapPath(err))
				}
				pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
				cert, ok := pub.(*ssh.Certificate)
				if err != nil || !ok {
					return usagef("--cert %s: not an SSH certificate", certFile)
				}
				serial = cert.Serial
			}
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			done, err := s.auth.RevokeSSH(name, serial)
			if err != nil {
				return err
			}
			printRevoked(cmd.OutOrStdout(), done)
			fmt.Fprintf(cmd.OutOrStdout(), "KRL %s\n", s.auth.Store.Path(authority.KRLFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "revoke every certificate of this user")
	f.StringVar(&host, "host", "", "revoke every host certificate of this node")
	f.StringVar(&certFile, "cert", "", "revoke this certificate (KEY-cert.pub)")
	f.Uint64Var(&serial, "serial", 0, "revoke the certificate with this serial")
	return cmd
}

func sshCACmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ca",
		Short: "Print the CA lines: TrustedUserCAKeys and @cert-authority",
		Long: `Prints the user CA's public key (for sshd's TrustedUserCAKeys) and the
known_hosts line that makes clients trust every host certificate of the site.`,
		Example: `  ztwizard ssh ca >> ~/.ssh/known_hosts   # then keep only the @cert-authority line`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			_, user, err := s.auth.SSHCA(authority.KindSSHUserCA)
			if err != nil {
				return err
			}
			_, host, err := s.auth.SSHCA(authority.KindSSHHostCA)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprint(w, "# TrustedUserCAKeys\n"+sshca.PublicKeyLine(user, s.site.Site+" ssh user CA"))
			fmt.Fprint(w, "# known_hosts\n"+sshca.KnownHostsLine(host, []string{"*"}))
			return nil
		},
	}
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "When the CA, each certificate and the CRL expire",
		Long: `Lists the CA, every certificate in force and the CRL, soonest to expire
first. WARN marks a CA or certificate within 30 days of its end and a CRL
within a day of its nextUpdate.`,
		Example: `  ztwizard status`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, false, nil)
			if err != nil {
				return err
			}
			list, err := s.auth.Status()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if len(list) == 0 {
				fmt.Fprintf(w, "no CA in %s yet: run `ztwizard ca init`\n", s.auth.Store.Dir())
				return nil
			}
			now := g.now()
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\tKIND\tNAME\tSERIAL\tNOT AFTER\tLEFT")
			warned := 0
			for _, e := range list {
				mark := ""
				if e.Warn {
					mark, warned = "WARN", warned+1
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, e.Kind, e.Name, e.Serial,
					e.NotAfter.UTC().Format(time.RFC3339), left(e.NotAfter.Sub(now)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if warned > 0 {
				fmt.Fprintf(w, "%d item(s) need attention: renew with `ztwizard ca issue`, `ztwizard ca crl`\n", warned)
			}
			return nil
		},
	}
}

// printRevoked lists what a revoke command revoked.
func printRevoked(w io.Writer, done []state.Record) {
	for _, r := range done {
		fmt.Fprintf(w, "revoked %s %s serial %s\n", r.Kind, r.Name, r.Serial)
	}
}

// left formats a remaining time in days or hours.
func left(d time.Duration) string {
	switch {
	case d <= 0:
		return "expired"
	case d >= 48*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	default:
		return d.Round(time.Minute).String()
	}
}

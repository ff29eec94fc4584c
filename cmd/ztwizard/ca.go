package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/pki"
)

func caCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The site's X.509 CA: issue, revoke, publish the CRL, list",
		Long: `The private certificate authority behind mutual TLS. It is created in the
state folder on first use, from the site's ca: section. With --passphrase-file
its private key is stored encrypted (PKCS#8, AES-256).`,
		Example: `  ztwizard ca init -c site.yaml --passphrase-file /root/ca.pass
  ztwizard ca issue --name service-worker-01 --out ./worker
  ztwizard ca revoke --name service-worker-01
  ztwizard ca crl --if-due --out /etc/ztwizard/crl.pem
  ztwizard ca list`,
		Args: noArgs,
	}
	cmd.AddCommand(caInitCmd(g), caIssueCmd(g), caRevokeCmd(g), caCRLCmd(g), caListCmd(g), caFingerprintCmd(g), caScheduleCmd(g), caRotateCmd(g))
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
	// During a CA rotation: the CA that issued it, and both CAs to trust.
	caCert, err := s.auth.IssuerOf(issued.Cert)
	if err != nil {
		return err
	}
	trust, err := s.auth.TrustPEM()
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
		{"ca.pem", trust, 0o644},
	}
	if issued.Record.Kind == authority.KindClient {
		pass, generated, err := p12Password(p12PassFile)
		if err != nil {
			return err
		}
		p12, err := pki.PKCS12(issued.Cert, issued.Key, []*x509.Certificate{caCert}, pass)
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
	var name, serial, publish string
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
			if err := publishAfterRevoke(cmd.OutOrStdout(), s, publish); err != nil {
				return err
			}
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
	cmd.Flags().StringVar(&publish, "publish", "", "publish the new CRL and KRL into this folder at once (default "+steps.PublishDir+" where the site has ca.host and it exists)")
	return cmd
}

func caCRLCmd(g *globals) *cobra.Command {
	var out, publish string
	var ifDue bool
	cmd := &cobra.Command{
		Use:   "crl",
		Short: "Sign a fresh CRL (a timer does this well before nextUpdate)",
		Long: `Signs a fresh CRL with the CA in the state folder (during a rotation, one per
CA). With --if-due only when its nextUpdate is near: within half of
ca.crl_validity (3.5 days for the default week). The CA
host's timer (` + "`ztwizard ca schedule`" + `) runs it with --if-due.

--publish DIR (the timer's, on a site with ca.host) also writes the CRL, the
KRL and its signature into DIR for the nodes' pull, renews every node's server
and SSH host certificates that are due (from two thirds of their life, for the
same key) and writes every node's current ones into DIR/nodes/NODE/:
certificates only, never a key.`,
		Example: `  ztwizard ca crl
  ztwizard ca crl --if-due --out /etc/ztwizard/crl.pem
  ztwizard ca crl --if-due --publish /var/lib/ztwizard-publish`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			// A CRL is signed by the CA that lives here; never make a new
			// CA just to sign one (that CRL would fail every client).
			if ok, err := s.auth.Store.Exists(authority.CACertFile); err != nil {
				return err
			} else if !ok {
				return usagef("no CA in %s: a CRL is signed where the CA lives (see `ztwizard ca init`)", s.auth.Store.Dir())
			}
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
			// Published first: on a CA host that is also a node, its pull
			// then never finds the published CRL older than the one
			// written here, which it would refuse.
			if publish != "" {
				if err := publishRevocations(s, publish, crl); err != nil {
					return err
				}
				if err := publishLeaves(cmd.OutOrStdout(), s, publish); err != nil {
					return err
				}
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
	cmd.Flags().StringVar(&publish, "publish", "", "also write crl.pem, revoked.krl and its signature, and every node's renewed certificates, into this folder nodes pull from")
	cmd.Flags().BoolVar(&ifDue, "if-due", false, "re-sign only when the CRL is within half its validity of nextUpdate")
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
				case r.Kind == authority.KindCA && r.SupersededAt != nil:
					st = "retired " + r.SupersededAt.Format(time.DateOnly) // by ca rotate
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Name, r.Serial, r.NotAfter.UTC().Format(time.RFC3339), st)
			}
			return tw.Flush()
		},
	}
}

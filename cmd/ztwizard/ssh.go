package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/sshca"
)

func sshCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh",
		Short: "The SSH user and host CAs: sign keys, revoke into a KRL",
		Long: `SSH certificates instead of static keys: a user's key is signed for the
principals (local accounts) the site gives that user, for a few hours; a host's
key is signed with the host CA so clients trust it through one @cert-authority
line. A certificate without principals is never signed.`,
		Example: `  ztwizard ssh sign --user alice --key ~/.ssh/id_ed25519.pub
  ztwizard ssh sign --host db --key /etc/ssh/ssh_host_ed25519_key.pub
  ztwizard ssh revoke --user alice
  ztwizard ssh ca`,
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
mesh address and endpoint host, and the validity ca.cert_validity; the host key
is recorded, so every later bundle, render and apply of that node carries a
host certificate for it (and sshd's HostCertificate line).`,
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
				// Recorded: later bundles, renders and applies of the
				// node carry a host certificate for this key.
				if err = s.auth.RecordHostKey(host, pub); err == nil {
					signed, err = s.auth.SignHost(host, pub, extra, validity)
				}
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
	var user, host, certFile, publish string
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
			if err := publishAfterRevoke(cmd.OutOrStdout(), s, publish); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "KRL %s\n", s.auth.Store.Path(authority.KRLFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "revoke every certificate of this user")
	f.StringVar(&host, "host", "", "revoke every host certificate of this node")
	f.StringVar(&certFile, "cert", "", "revoke this certificate (KEY-cert.pub)")
	f.Uint64Var(&serial, "serial", 0, "revoke the certificate with this serial")
	f.StringVar(&publish, "publish", "", "publish the new CRL and KRL into this folder at once (default "+steps.PublishDir+" where the site has ca.host and it exists)")
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
			// During a CA rotation: the old and the new CA of each.
			users, err := s.auth.TrustedSSH(authority.KindSSHUserCA)
			if err != nil {
				return err
			}
			hosts, err := s.auth.TrustedSSH(authority.KindSSHHostCA)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprint(w, "# TrustedUserCAKeys\n")
			for _, user := range users {
				fmt.Fprint(w, sshca.PublicKeyLine(user, s.site.Site+" ssh user CA"))
			}
			fmt.Fprint(w, "# known_hosts\n")
			for _, host := range hosts {
				fmt.Fprint(w, sshca.KnownHostsLine(host, []string{"*"}))
			}
			return nil
		},
	}
}

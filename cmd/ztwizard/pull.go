package main

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/pull"
)

func nodePullCmd(g *globals) *cobra.Command {
	var from, root string
	var noReload bool
	cmd := &cobra.Command{
		Use:   "pull",
		Short: "Fetch the CRL and KRL the CA host publishes, check them, install them",
		Long: `On a node: fetches crl.pem, revoked.krl and revoked.krl.sig from the folder
the CA host publishes (` + "`ca crl --publish DIR`" + `, served by nginx on its mesh
address), and installs each that passes every check: the CRL signed by the CA
installed in ` + steps.CACertPath + `, not past its nextUpdate, its number not lower
than the installed CRL's; the KRL signed by the same CA (detached signature)
and its version not lower than the installed KRL's. A file that fails is never
installed; the reason is printed and the exit code is 1. nginx is reloaded when
the CRL changed, restarted when it revokes more (a reload keeps TLS sessions a
revoked client could resume); sshd reads the KRL on each connection. A timer runs this on
every node of a site with ca.publish set.`,
		Example: `  ztwizard node pull --from http://10.100.0.1:8440`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(from)
			if from == "" || err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
				return usagef("--from %q: give the CA host's published folder as http://ADDRESS:PORT", from)
			}
			res, err := pull.Pull(cmd.Context(), pull.Options{Root: root, From: from, Now: g.now(), Log: cmd.OutOrStdout()})
			if res != nil && res.CRL && !noReload && filepath.Clean(root) == "/" && isDir("/run/systemd/system") {
				// A reload keeps nginx's TLS session cache: after a new
				// revocation only a restart stops resumed sessions.
				verb := "try-reload-or-restart"
				if res.Revoked {
					verb = "try-restart"
				}
				if out, rerr := exec.Command("systemctl", verb, "nginx.service").CombinedOutput(); rerr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "systemctl %s nginx: %v: %s\n", verb, rerr, bytes.TrimSpace(out))
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the URL of the CA host's published folder")
	cmd.Flags().StringVar(&root, "root", "/", "install under this folder instead of /")
	cmd.Flags().BoolVar(&noReload, "no-reload", false, "do not reload nginx")
	return cmd
}

// publishRevocations writes the CRL, the KRL (made if there is none yet)
// and the KRL's signature by the CA into dir.
func publishRevocations(s *session, dir string, crl []byte) error {
	ca, _, err := s.auth.CA()
	if err != nil {
		return err
	}
	var krl []byte
	if ok, err := s.auth.Store.Exists(authority.KRLFile); err != nil {
		return err
	} else if ok {
		krl, err = s.auth.Store.ReadFile(authority.KRLFile)
		if err != nil {
			return err
		}
	} else if krl, err = s.auth.KRL(); err != nil {
		return err
	}
	return pull.Publish(dir, ca, crl, krl)
}

// publishAfterRevoke publishes the new CRL and KRL at once, so nodes pull
// a revocation at their next run rather than after the CA's next CRL run:
// into dir, or, where the site names ca.host and this host has the publish
// folder, into that.
func publishAfterRevoke(w io.Writer, s *session, dir string) error {
	if dir == "" && s.site.CA.Host != "" && isDir(steps.PublishDir) {
		dir = steps.PublishDir
	}
	if dir == "" {
		return nil
	}
	crl, err := s.auth.Store.ReadFile(authority.CRLFile)
	if err != nil {
		return err
	}
	if err := publishRevocations(s, dir, crl); err != nil {
		return err
	}
	fmt.Fprintf(w, "published the CRL and KRL to %s\n", dir)
	return nil
}

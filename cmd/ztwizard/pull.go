package main

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/pull"
)

func nodePullCmd(g *globals) *cobra.Command {
	var from, root, node string
	var noReload bool
	cmd := &cobra.Command{
		Use:   "pull",
		Short: "Fetch the CRL, the KRL and renewed certificates the CA host publishes, check them, install them",
		Long: `On a node: fetches crl.pem, revoked.krl and revoked.krl.sig from the folder
the CA host publishes (` + "`ca crl --publish DIR`" + `, served by nginx on its mesh
address), and installs each that passes every check: every CRL of the file
(two during a CA rotation) signed by a CA installed in ` + steps.CACertPath + `, not
past its nextUpdate, its number not lower than the installed CRL of the same
CA; the KRL signed by one of those CAs (detached signature) and its version
not lower than the installed KRL's.

With --node NAME it also fetches the node's renewed certificates, which the
CA host's scheduled ` + "`ca crl --publish`" + ` renews at two thirds of their life:
nodes/NAME/SERVICE.crt for each SERVICE.crt installed in ` + steps.TLSDir + `
beside its key, and nodes/NAME/ssh_host_ed25519_key-cert.pub when a host
certificate is installed. Each is installed only when it chains to a CA in
` + steps.CACertPath + ` (the host certificate: signed by a host CA of
` + steps.SSHKnownHostsPath + `), is for the key on this node's disk, names what
the installed one names, is in force and ends later than the installed one;
with the installed file's mode and owner. Nothing published: nothing changes.

A file that fails is never installed; the reason is printed and the exit code
is 1. nginx is reloaded when the CRL or a server certificate changed (it
resumes no TLS session, so a reload stops a revoked client); sshd reads the
KRL on each connection and is reloaded for a new host
certificate. A timer runs this on every node of a site with ca.host set, every
5 minutes (on a test timescale, every few seconds: see ca.test_timescale).`,
		Example: `  ztwizard node pull --from http://10.100.0.1:8440 --node web`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := url.Parse(from)
			if from == "" || err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
				return usagef("--from %q: give the CA host's published folder as http://ADDRESS:PORT", from)
			}
			if node != "" {
				if err := steps.ValidName(node); err != nil {
					return usagef("--node: %v", err)
				}
			}
			res, err := pull.Pull(cmd.Context(), pull.Options{Root: root, From: from, Node: node, Now: g.now(), Log: cmd.OutOrStdout()})
			if res != nil && !noReload && filepath.Clean(root) == "/" && isDir("/run/systemd/system") {
				systemctl := func(verb, unit string) {
					if out, rerr := exec.Command("systemctl", verb, unit).CombinedOutput(); rerr != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "systemctl %s %s: %v: %s\n", verb, unit, rerr, bytes.TrimSpace(out))
					}
				}
				// nginx resumes no TLS session (see its vhosts): a reload
				// is enough for a revocation too, and keeps serving while
				// its old workers finish their requests.
				if res.CRL || len(res.Servers) > 0 {
					systemctl("try-reload-or-restart", "nginx.service")
				}
				if res.HostCert {
					systemctl("try-reload-or-restart", "ssh.service")
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the URL of the CA host's published folder")
	cmd.Flags().StringVar(&root, "root", "/", "install under this folder instead of /")
	cmd.Flags().StringVar(&node, "node", "", "this node's name: also fetch its renewed certificates")
	cmd.Flags().BoolVar(&noReload, "no-reload", false, "do not reload nginx or sshd")
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

// publishLeaves renews every node's server and SSH host certificates that
// are due (at two thirds of their life) and writes every node's current
// ones into dir/nodes, for the nodes' pull: certificates only.
func publishLeaves(w io.Writer, s *session, dir string) error {
	before, err := s.auth.List()
	if err != nil {
		return err
	}
	leaves, renewErr := s.auth.RenewLeaves()
	after, err := s.auth.List()
	if err != nil {
		return err
	}
	for _, r := range after[min(len(before), len(after)):] {
		if r.Kind == authority.KindServer || r.Kind == authority.KindSSHHost {
			fmt.Fprintf(w, "renewed %s %s: serial %s until %s\n", r.Kind, r.Name, r.Serial, r.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	// What could be renewed is published even when a node failed.
	if err := pull.PublishLeaves(dir, leaves); err != nil {
		return err
	}
	return renewErr
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

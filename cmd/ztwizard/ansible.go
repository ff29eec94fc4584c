package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/ansible"
	"ztwizard/steps/authority"
)

func ansibleCmd(g *globals) *cobra.Command {
	var out, binary string
	var hostKeys []string
	o := ansible.Options{}
	cmd := &cobra.Command{
		Use:   "ansible",
		Short: "Write an Ansible inventory and playbook that push bundles to every node",
		Long: `Writes into --out an inventory (inventory.yml: one host per node, reached at
its endpoint's host, with your account, key and SSH certificate), a playbook
(push.yml) and known_hosts (the site's @cert-authority line). The playbook
gathers each node's request, imports them and builds the bundles here (the CA
host), then batch by batch applies each node's bundle with a confirm window
and confirms it over a new SSH connection: a bundle that would lock you out
is rolled back by the node itself, and that node is reported failed.

A node without a host certificate yet is trusted only if it shows the host
key whose fingerprint you give with --host-key NODE=SHA256:... (or put in the
inventory's host_key_fingerprint): no silent trust on first use.`,
		Example: `  ztwizard ansible -c site.yaml --out ./push --identity ~/.ssh/id_ed25519
  ztwizard ansible -c site.yaml --out ./push --host-key db=SHA256:AbC...
  ansible-playbook -i push/inventory.yml push/push.yml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out is required: the folder for the inventory and playbook")
			}
			o.HostKeys = map[string]string{}
			for _, hk := range hostKeys {
				node, fp, ok := strings.Cut(hk, "=")
				if !ok {
					return usagef("--host-key %q: want NODE=SHA256:...", hk)
				}
				o.HostKeys[node] = fp
			}
			o.Binary, o.Site, o.PassphraseFile = binary, g.site, g.passphraseFile
			state, err := stateDir(g)
			if err != nil {
				return err
			}
			o.State = state
			if err := o.Resolve(); err != nil {
				return usageError{err}
			}
			// Bad input is refused before the state is touched.
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error {
				if err := o.Check(site); err != nil {
					return usageError{err}
				}
				return nil
			})
			if err != nil {
				return err
			}
			defer s.close()
			if _, err := writeAnsible(s.auth, s.site, out, o); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s, %s and %s into %s for %d node(s)\n", ansible.InventoryFile, ansible.PlaybookFile,
				ansible.KnownHostsFile, out, len(s.site.Nodes))
			fmt.Fprintf(w, "push with: ansible-playbook -i %s %s\n",
				filepath.Join(out, ansible.InventoryFile), filepath.Join(out, ansible.PlaybookFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "the folder to write into (made 0700; requests and bundles go there too)")
	f.StringVar(&o.User, "user", "root", "the account you log in as on the nodes (a principal of your SSH certificate)")
	f.StringVar(&o.Identity, "identity", "", "your private key (default ~/.ssh/id_ed25519)")
	f.StringVar(&o.Certificate, "certificate", "", "your SSH user certificate (default IDENTITY-cert.pub)")
	f.StringVar(&binary, "binary", "", "ztwizard to run here and copy to the nodes (default: this program)")
	f.StringArrayVar(&hostKeys, "host-key", nil, "NODE=SHA256:... the fingerprint of a node's SSH host key, as you confirmed it (repeatable)")
	f.DurationVar(&o.Confirm, "confirm", ansible.DefaultConfirm, "each apply rolls back unless confirmed within this")
	return cmd
}

// writeAnsible writes the Ansible push for site into dir with o (resolved:
// see ansible.Options.Resolve), trusting the state's SSH host CA, as both
// `ztwizard ansible` and the wizard's Finish step do; it returns the paths
// written. A refusal of the options is a usage error.
func writeAnsible(auth *authority.Authority, site *steps.Site, dir string, o ansible.Options) ([]string, error) {
	_, hostCA, err := auth.SSHCA(authority.KindSSHHostCA)
	if err != nil {
		return nil, err
	}
	o.HostCA = hostCA
	if err := o.Check(site); err != nil {
		return nil, usageError{err}
	}
	return ansible.Write(dir, site, o)
}

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/host"
)

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
			if err := s.auth.KeysHere(node); err != nil {
				return err
			}
			sec, err := s.auth.Secrets(node)
			if err != nil {
				return err
			}
			plan, err := steps.BuildPlan(s.site, node, sec, g.now())
			if err != nil {
				return err
			}
			total, written, err := renderTree(plan, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rendered node %s into %s: %d files (%d changed), %d firewall rules, %d WireGuard peers\n",
				node, out, total, written, plan.Firewall.RuleCount(), len(plan.WireGuard.Config.Peers))
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node to render")
	cmd.Flags().StringVar(&out, "out", "", "the folder to write into (made 0700)")
	return cmd
}

// renderTree writes a plan's files under dir (made 0700: they hold private
// keys) as they would land under /, plus nftables.nft and the wg-quick file
// at the top. It returns how many files there are and how many changed.
func renderTree(plan *steps.Plan, dir string) (total, written int, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, 0, fmt.Errorf("render: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return 0, 0, fmt.Errorf("render: %w", err)
	}
	extra := []steps.File{{Path: "/nftables.nft", Mode: 0o644, Content: []byte(plan.Firewall.Script())}}
	for _, f := range plan.Files {
		if f.Path == filepath.Join(steps.WireGuardConfDir, plan.WireGuard.Name+".conf") {
			extra = append(extra, steps.File{Path: "/" + plan.WireGuard.Name + ".conf", Mode: f.Mode, Content: f.Content})
		}
	}
	changed, err := host.WriteFiles(dir, append(extra, plan.Files...))
	if err != nil {
		return 0, 0, err
	}
	return len(plan.Files) + len(extra), len(changed), nil
}

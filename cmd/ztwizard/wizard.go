package main

import (
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"ztwizard/steps"
	"ztwizard/tui"
)

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

package main

import (
	"github.com/charmbracelet/fang"
	"github.com/spf13/cobra"
)

// printOwnErrors makes every command print its own failure with printError
// and keep it in *failed instead of returning it. fang asks the terminal
// for its background colour before it prints an error, and on a terminal
// in line mode the answer never arrives: each failure (ctrl+c in the
// plain wizard prompts among them) waited four seconds and left the
// terminal's answer on the admin's command line. Errors cobra finds
// itself (an unknown flag) still go to fang.
func printOwnErrors(root *cobra.Command, failed *error) {
	for _, c := range root.Commands() {
		printOwnErrors(c, failed)
	}
	run := root.RunE
	if run == nil {
		return
	}
	root.RunE = func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		if err != nil {
			printError(cmd.ErrOrStderr(), fang.Styles{}, err)
			*failed = err
		}
		return nil
	}
}

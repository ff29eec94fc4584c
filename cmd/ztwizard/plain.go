package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/charmbracelet/fang"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// styled tells whether help and errors may be styled: only on a terminal
// (stdin, stdout and stderr all are one) that may show colour (no
// NO_COLOR, TERM not dumb). Styling asks the terminal for its background
// colour (OSC 11, then DA1) and waits up to 4 s for an answer, so where it
// is off nothing is asked.
func styled() bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" || os.Getenv("TERM") == "" {
		return false
	}
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if !term.IsTerminal(int(f.Fd())) {
			return false
		}
	}
	return true
}

// executePlain runs root as fang.Execute does, with cobra's plain help and
// the errors as printError writes them: no styles, no terminal queries.
func executePlain(ctx context.Context, root *cobra.Command) error {
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.Version = version()
	err := root.ExecuteContext(ctx)
	if err != nil {
		printError(root.ErrOrStderr(), fang.Styles{}, err)
	}
	return err
}

// version is the module version, as fang shows it.
func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Sum != "" {
		return info.Main.Version
	}
	return "unknown (built from source)"
}

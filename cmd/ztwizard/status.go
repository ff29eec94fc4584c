package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"ztwizard/steps/authority"
	"ztwizard/steps/host"
	"ztwizard/steps/state"
)

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "What is applied, and when the CA, each certificate and the CRL expire",
		Long: `Shows an apply that waits for confirmation (and its deadline), what the last
apply installed, then the CA, every certificate in force and the CRL, soonest
to expire first. WARN marks a CA or certificate within 30 days of its end and
a CRL within a day of its nextUpdate. Needs no site file. On a node of a
fleet, also what it holds from its CA host: the serial of the bundle applied,
the CA it trusts (fingerprint) and when each piece of the bundle runs out.`,
		Example: `  ztwizard status`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := stateDir(g)
			if err != nil {
				return err
			}
			if _, err := os.Stat(dir); err != nil {
				return usagef("no state at %s yet: run `ztwizard ca init` first, or pass --state", dir)
			}
			store, err := state.Open(dir)
			if err != nil {
				return err
			}
			warnRepairs(store)
			w := cmd.OutOrStdout()
			if err := printApplied(w, dir); err != nil {
				return err
			}
			held, err := printHeld(w, store, g.now())
			if err != nil {
				return err
			}
			list, err := (&authority.Authority{Store: store, Now: g.now}).Status()
			if err != nil {
				return err
			}
			if len(list) == 0 && held {
				return nil
			}
			if len(list) == 0 {
				fmt.Fprintf(w, "no CA in %s yet: run `ztwizard ca init`\n", dir)
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

// printApplied tells of a pending or interrupted apply on this host, and
// how many files the last one installed.
func printApplied(w io.Writer, state string) error {
	jdir, err := journalDir(state, "/")
	if err != nil {
		return err
	}
	a := host.NewFiles("/", jdir)
	jr, err := a.Pending()
	if err != nil {
		return err
	}
	switch {
	case jr == nil:
	case jr.Phase == host.PhaseApplied:
		fmt.Fprintf(w, "PENDING apply of node %s: confirm before %s (%s left) with `ztwizard confirm`, or it rolls back\n",
			jr.Node, jr.Deadline.Local().Format(time.RFC3339), left(time.Until(jr.Deadline)))
	default:
		fmt.Fprintf(w, "INTERRUPTED apply of node %s (pid %d, started %s): run `ztwizard rollback`\n",
			jr.Node, jr.PID, jr.Started.Local().Format(time.RFC3339))
	}
	n, err := a.Installed()
	if err != nil {
		return err
	}
	if n > 0 {
		fmt.Fprintf(w, "applied: %d files installed on this host\n", n)
	}
	return nil
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

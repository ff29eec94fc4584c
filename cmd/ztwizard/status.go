package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"ztwizard/steps/state"
)

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "When the CA, each certificate and the CRL expire",
		Long: `Lists the CA, every certificate in force and the CRL, soonest to expire
first. WARN marks a CA or certificate within 30 days of its end and a CRL
within a day of its nextUpdate.`,
		Example: `  ztwizard status`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open(cmd.Context(), g, false, nil)
			if err != nil {
				return err
			}
			list, err := s.auth.Status()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if len(list) == 0 {
				fmt.Fprintf(w, "no CA in %s yet: run `ztwizard ca init`\n", s.auth.Store.Dir())
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

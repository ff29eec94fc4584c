package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/bundle"
	"ztwizard/steps/host"
	"ztwizard/steps/monitor"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	var prom, root string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "What is applied, and when the CA, each certificate and the CRL expire",
		Long: `Shows an apply that waits for confirmation (and its deadline), what the last
apply installed, then the CA, every certificate in force and the CRL, soonest
to expire first. WARN marks what is within its warning window: a CA within a
year of its end, a certificate within 30 days, a CRL within a day of its
nextUpdate. On a CA host whose key is encrypted, a problem until
` + "`ztwizard ca schedule`" + ` has set up the unattended CRL refresh, with the
CRL's nextUpdate as its deadline. Needs no site file. On a node of a fleet, also what it holds from
its CA host: the serial of the bundle applied, the CA it trusts (fingerprint)
and when each piece of the bundle runs out. The windows are a real site's
unless the site file (-c, or the one an apply installed) sets
ca.test_timescale: then they shrink with its validities, and status warns.

Exits 0 when nothing is due, 1 when something is within its warning window or
past its end. --json prints the same as one JSON object (fields in the
README); --prometheus FILE writes the expiries as metrics for node_exporter's
textfile collector (atomically; the name must end in .prom).`,
		Example: `  ztwizard status
  ztwizard status --json
  ztwizard status --prometheus /var/lib/prometheus/node-exporter/ztwizard.prom`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if prom != "" && filepath.Ext(prom) != ".prom" {
				return usagef("--prometheus %s: node_exporter reads only files ending in .prom", prom)
			}
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
			now := g.now()
			list, err := (&authority.Authority{Store: store, Now: g.now}).Status()
			if err != nil {
				return err
			}
			held, err := bundle.LoadHeld(store)
			if err != nil {
				return err
			}
			windows, err := statusWindows(cmd, g, root)
			if err != nil {
				return err
			}
			rep := windows.Build(now, list, held)
			if held != nil {
				if crl, err := os.ReadFile(filepath.Join(root, steps.CRLPath)); err == nil {
					rep.UseInstalledCRL(crl, now)
				}
				useInstalledLeaves(rep, root, now)
			}
			var next time.Time
			for _, it := range rep.Items {
				if it.Source == monitor.SourceCA && it.Kind == authority.KindCRL {
					next = it.NotAfter
				}
			}
			if p, err := monitor.Unattended(store, root, next); err != nil {
				return err
			} else if p != nil {
				rep.AddProblem(*p)
			}
			if prom != "" {
				if err := rep.WritePrometheus(prom); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
				return dueErr(rep)
			}
			if err := printApplied(w, dir); err != nil {
				return err
			}
			if _, err := printHeld(w, store, now); err != nil {
				return err
			}
			printPulledCRL(w, rep, held, now)
			if len(list) == 0 && held == nil {
				fmt.Fprintf(w, "no CA in %s yet: run `ztwizard ca init`\n", dir)
			}
			if len(list) > 0 {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "\tKIND\tNAME\tSERIAL\tNOT AFTER\tLEFT")
				for _, it := range rep.Items {
					if it.Source != monitor.SourceCA {
						continue
					}
					mark := ""
					if it.Due {
						mark = "WARN"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, it.Kind, it.Name, it.Serial,
						it.NotAfter.Format(time.RFC3339), left(it.NotAfter.Sub(now)))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			for _, p := range rep.Problems {
				fmt.Fprintf(w, "WARN %s (by %s)\n", p.What, p.Deadline.UTC().Format(time.RFC3339))
			}
			if rep.Due > 0 {
				fmt.Fprintf(w, "%d item(s) need attention: renew with `ztwizard ca issue`, `ztwizard ca crl`, `ztwizard bundle`\n", rep.Due)
			}
			return dueErr(rep)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the expiries as JSON")
	cmd.Flags().StringVar(&root, "root", "/", "where this host's files are (its units and credentials)")
	cmd.Flags().StringVar(&prom, "prometheus", "", "write the expiries as node_exporter textfile metrics to this .prom file")
	return cmd
}

// statusWindows is the warning windows of the site status judges by: the
// -c file when given, else the site file an apply installed under root
// (see steps.Timing); monitor.Default when there is none. A site on a test
// timescale is warned of.
func statusWindows(cmd *cobra.Command, g *globals, root string) (monitor.Windows, error) {
	var site *steps.Site
	if cmd.Flags().Changed("config") {
		s, err := loadSite(g)
		if err != nil {
			return monitor.Windows{}, err
		}
		site = s
	} else if s, err := steps.Load(filepath.Join(root, steps.SiteFilePath)); err == nil {
		site = s
	}
	if site == nil {
		return monitor.Default, nil
	}
	if site.CA.TestTimescale {
		fmt.Fprintln(cmd.ErrOrStderr(), steps.TestTimescaleWarning(site))
	}
	return monitor.SiteWindows(site.Timing()), nil
}

// useInstalledLeaves counts, on a node, the server certificates and the
// SSH host certificate installed under root when a pull brought renewed
// ones after the bundle.
func useInstalledLeaves(rep *monitor.Report, root string, now time.Time) {
	// UseInstalledEnd sorts the items: walk a copy.
	for _, it := range slices.Clone(rep.Items) {
		if it.Source != monitor.SourceNode {
			continue
		}
		switch it.Kind {
		case authority.KindServer:
			if err := steps.ValidName(it.Name); err != nil {
				continue
			}
			data, err := os.ReadFile(filepath.Join(root, steps.TLSDir, it.Name+".crt"))
			if err != nil {
				continue
			}
			if c, err := pki.DecodeCertPEM(data); err == nil {
				rep.UseInstalledEnd(it.Kind, it.Name, c.NotAfter, now)
			}
		case authority.KindSSHHost:
			data, err := os.ReadFile(filepath.Join(root, steps.SSHHostCertPath))
			if err != nil {
				continue
			}
			if pub, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
				if c, ok := pub.(*ssh.Certificate); ok && c.ValidBefore < math.MaxInt64 {
					rep.UseInstalledEnd(it.Kind, it.Name, time.Unix(int64(c.ValidBefore), 0), now)
				}
			}
		}
	}
}

// dueErr is the error that makes status exit 1 when something is due.
func dueErr(rep *monitor.Report) error {
	if rep.Due == 0 {
		return nil
	}
	return fmt.Errorf("%d item(s) within their warning window or past their end", rep.Due)
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

// printPulledCRL shows the CRL installed on a node when a pull brought a
// newer one than its bundle (status counts that one).
func printPulledCRL(w io.Writer, rep *monitor.Report, held *bundle.Held, now time.Time) {
	if held == nil {
		return
	}
	var fromBundle time.Time
	for _, e := range held.Expiries {
		if e.What == "CRL" {
			fromBundle = e.NotAfter
		}
	}
	for _, it := range rep.Items {
		if it.Source == monitor.SourceNode && it.Kind == authority.KindCRL && !it.NotAfter.Equal(fromBundle) {
			mark := "  "
			if it.Due {
				mark = "WARN "
			}
			fmt.Fprintf(w, "%s%-28s %s  %s\n", mark, "CRL installed (pulled)", it.NotAfter.Format(time.RFC3339), left(it.NotAfter.Sub(now)))
		}
	}
}

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"ztwizard/steps/authority"
	"ztwizard/steps/state"
)

func caRotateCmd(g *globals) *cobra.Command {
	var phase string
	var cas []string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace a CA without an outage, in phases; without --phase, show the current one",
		Long: `Replaces the X.509 CA and the SSH user and host CAs (or those named by --ca)
in phases, so that no client, user or host the old or the new CA vouches for is
refused on the way:

  init      a new CA beside the old one; from now on every plan and bundle
            trusts both (nginx's CA file and CRLs, sshd's TrustedUserCAKeys,
            the @cert-authority lines, the bundle trust of fleet nodes).
            Apply or push every node now.
  reissue   the new CA issues from now on, and every server, client and SSH
            host certificate is issued again under it; SSH users whose
            certificates the old CA signed are listed for ssh sign. Apply or
            push every node, hand out the new client certificates.
  finish    the new CA takes the old one's place; the old one (its key too)
            is kept under retired/ for audit and dropped from every trust
            file. Apply or push every node.
  rollback  before finish: back to the old CA alone, leaves issued again
            under it; the new one is kept under retired/.

Each phase is written to the audit log before it acts, and a phase cut short
is completed by running it again.`,
		Example: `  ztwizard ca rotate --phase init --passphrase-file /root/ca.pass
  ztwizard ca rotate
  ztwizard ca rotate --phase reissue --passphrase-file /root/ca.pass
  ztwizard ca rotate --phase finish --passphrase-file /root/ca.pass`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch phase {
			case "", authority.PhaseInit, authority.PhaseReissue, authority.PhaseFinish, authority.PhaseRollback:
			default:
				return usagef("--phase %q: want init, reissue, finish or rollback", phase)
			}
			kinds, err := authority.ParseCAs(cas)
			if err != nil {
				return usagef("%v", err)
			}
			if len(cas) > 0 && phase != authority.PhaseInit {
				return usagef("--ca is for --phase init: the other phases act on the CAs being rotated")
			}
			s, err := open(cmd.Context(), g, phase != "", nil)
			if err != nil {
				return err
			}
			defer s.close()
			w := cmd.OutOrStdout()
			var r *authority.Rotation
			var issued []state.Record
			switch phase {
			case "":
				if r, err = s.auth.Rotation(); err != nil {
					return err
				}
			case authority.PhaseInit:
				r, err = s.auth.RotateInit(kinds)
			case authority.PhaseReissue:
				r, issued, err = s.auth.RotateReissue()
			case authority.PhaseFinish:
				r, err = s.auth.RotateFinish()
			case authority.PhaseRollback:
				r, err = s.auth.RotateRollback()
			}
			if err != nil {
				return err
			}
			printRotation(w, s, r, issued, phase != "")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&phase, "phase", "", "init, reissue, finish or rollback; none shows the rotation's state")
	f.StringSliceVar(&cas, "ca", nil, "with --phase init: the CAs to rotate, x509, ssh-user, ssh-host or all (default all)")
	return cmd
}

// printRotation says where a rotation stands and what to do next.
func printRotation(w io.Writer, s *session, r *authority.Rotation, issued []state.Record, acted bool) {
	for _, rec := range issued {
		fmt.Fprintf(w, "issued %s %s: serial %s\n  %s\n", rec.Kind, rec.Name, rec.Serial, s.auth.Store.Path(rec.File))
	}
	switch r.Phase {
	case authority.PhaseNone:
		fmt.Fprintln(w, "no CA rotation in progress")
		if r.Last != "" {
			fmt.Fprintf(w, "last rotation: %s\n", r.Last)
		}
	case authority.PhaseInit:
		fmt.Fprintf(w, "rotation of %s: phase init (since %s): both CAs are trusted, the old one issues\n", strings.Join(r.CAs, ", "), r.Started.Format("2006-01-02 15:04:05Z07:00"))
		fmt.Fprintln(w, "next: apply or push every node, then `ztwizard ca rotate --phase reissue`")
	case authority.PhaseReissue:
		fmt.Fprintf(w, "rotation of %s: phase reissue: both CAs are trusted, the new one issues\n", strings.Join(r.CAs, ", "))
		fmt.Fprintln(w, "next: apply or push every node and hand out the new client certificates, then `ztwizard ca rotate --phase finish`")
	default:
		fmt.Fprintf(w, "rotation of %s: %s was cut short: run `ztwizard ca rotate --phase %s` again\n", strings.Join(r.CAs, ", "), r.Phase,
			map[bool]string{true: authority.PhaseFinish, false: authority.PhaseRollback}[r.Phase == "finishing"])
	}
	if len(r.Resign) > 0 {
		fmt.Fprintf(w, "SSH users to sign again (`ztwizard ssh sign --user U --key KEY.pub`): %s\n", strings.Join(r.Resign, ", "))
	}
	if acted && r.Phase == authority.PhaseNone {
		fmt.Fprintln(w, "next: apply or push every node")
	}
}

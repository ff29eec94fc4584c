package tui

import (
	"fmt"
	"slices"
	"strings"

	"ztwizard/steps"
)

// sshPage describes SSH certificates and who may log in as whom.
func sshPage(*model) *formPage {
	return newFormPage(stepSSH,
		"sshd trusts short-lived certificates of the site's SSH CA instead of keys on disk; each user "+
			"may log in only as the accounts listed here.",
		newText("Certificate life", "How long a signed user certificate is valid; short is safer.",
			"ssh.cert_validity", duration(func(s *steps.Site) *steps.Duration { return &s.SSH.CertValidity })).
			withHint(func(*env) string { return string(steps.DefaultSSHCertValidity) + " (default)" }),
		newText("Admin networks", "Networks that may reach SSH besides the mesh, separated by spaces, e.g. 192.168.10.0/24; a bare address is that one host (/32).",
			"ssh.admin_cidrs", networks(func(s *steps.Site) *[]string { return &s.SSH.AdminCIDRs })).
			withHint(func(*env) string { return "none: SSH over the mesh only" }),
		newList("Users", "People who may log in. Enter edits, a adds, x removes.", userItems()),
	)
}

// userItems are the site's SSH users.
func userItems() itemKind {
	return &items[steps.SSHUser]{
		nounS: "user", pathS: "ssh.users",
		intro: "A person who may log in, and the local accounts their certificates name.",
		list:  func(s *steps.Site) *[]steps.SSHUser { return &s.SSH.Users },
		clone: func(u steps.SSHUser) steps.SSHUser { u.Principals = slices.Clone(u.Principals); return u },
		fresh: func(*env) steps.SSHUser { return steps.SSHUser{} },
		nameOf: func(u steps.SSHUser) string {
			return u.Name
		},
		cols: func(_ *env, _ int, u steps.SSHUser) []string {
			return []string{orNew(u.Name), "as " + strings.Join(u.Principals, " ")}
		},
		editor: func(i int) []field {
			u := func(s *steps.Site) *steps.SSHUser { return &s.SSH.Users[i] }
			p := func(f string) string { return fmt.Sprintf("ssh.users[%d].%s", i, f) }
			return []field{
				newText("Name", "The person's name as an account name: e.g. alice.",
					p("name"), text(func(s *steps.Site) *string { return &u(s).Name })),
				newText("Principals", "Local accounts they may log in as, separated by spaces (never commas: ssh-keygen splits on them).",
					p("principals"), words(func(s *steps.Site) *[]string { return &u(s).Principals }, false)).
					withHint(func(*env) string { return "e.g. root devops" }),
			}
		},
	}
}

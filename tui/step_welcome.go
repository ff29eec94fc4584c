package tui

import (
	"errors"
	"strings"

	"ztwizard/steps"
)

// welcomePage asks for the site's name and where its secrets live.
func welcomePage(m *model) *formPage {
	state := newText("State folder",
		"Where the CA, keys and records are kept (made 0700). Nothing else on this host is written until you apply.",
		"", binding{
			get: func(*steps.Site) string { return m.sess.stateDir },
			set: func(_ *steps.Site, v string) error {
				v = strings.TrimSpace(v)
				if v == "" {
					return errors.New("name a folder for the CA and keys")
				}
				m.sess.stateDir = v
				return nil
			},
		})
	var again *textField
	differ := func() error {
		if m.sess.again != m.sess.passphrase && m.sess.again != "" {
			return errors.New("the two passphrases differ")
		}
		return nil
	}
	pass := newText("CA passphrase",
		"Encrypts the CA keys at rest, or unlocks keys already encrypted; it is never written down. Empty keeps them unencrypted (0600).",
		"", binding{
			get: func(*steps.Site) string { return m.sess.passphrase },
			set: func(_ *steps.Site, v string) error {
				m.sess.passphrase = v
				again.perr = differ()
				return nil
			},
		}).hidden().withHint(func(*env) string { return "none" })
	again = newText("Again",
		"The passphrase once more, to be sure of a new one.",
		"", binding{
			get: func(*steps.Site) string { return m.sess.again },
			set: func(_ *steps.Site, v string) error { m.sess.again = v; return differ() },
		}).hidden().withHint(func(*env) string {
		if m.sess.passphrase == "" {
			return "no passphrase"
		}
		return "type it again"
	})
	again.confirms = true
	return newFormPage(stepWelcome,
		"A private CA with mutual TLS, a WireGuard mesh, SSH certificates and a default-drop firewall, "+
			"from one site file. Nothing touches this host until you apply it at the end.",
		newText("Site name", "A short name for the site: lower-case letters, digits and hyphens, e.g. oslo-prod.",
			"site", text(func(s *steps.Site) *string { return &s.Site })),
		state, pass, again)
}

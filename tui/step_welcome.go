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
	pass := newText("CA passphrase",
		"Encrypts the CA keys at rest; it is never written down. Empty keeps them unencrypted (0600).",
		"", binding{
			get: func(*steps.Site) string { return m.sess.passphrase },
			set: func(_ *steps.Site, v string) error { m.sess.passphrase = v; return nil },
		}).hidden().withHint(func(*env) string { return "none" })
	return newFormPage(stepWelcome,
		"A private CA with mutual TLS, a WireGuard mesh, SSH certificates and a default-drop firewall, "+
			"from one site file. Nothing touches this host until you apply it at the end.",
		newText("Site name", "A short name for the site: lower-case letters, digits and hyphens, e.g. oslo-prod.",
			"site", text(func(s *steps.Site) *string { return &s.Site })),
		state, pass)
}

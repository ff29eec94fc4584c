package tui

import (
	"ztwizard/steps"
	"ztwizard/steps/pki"
)

// caPage describes the site's private certificate authority.
func caPage(*model) *formPage {
	keyTypes := func(*env) []option {
		var out []option
		for _, k := range pki.KeyTypes() {
			l := string(k)
			if l == steps.DefaultCAKey {
				l += " (recommended)"
			}
			out = append(out, option{string(k), l})
		}
		return out
	}
	def := func(d steps.Duration) func(*env) string {
		return func(*env) string { return string(d) + " (default)" }
	}
	return newFormPage(stepCA,
		"Your own CA signs every server and client certificate of the site; its SSH sibling signs "+
			"logins. Its keys stay in the state folder.",
		newText("Common name", "The CA's name as it appears in every certificate.",
			"ca.subject.common_name", text(func(s *steps.Site) *string { return &s.CA.Subject.CommonName })).
			withHint(func(e *env) string {
				if e.site.Site == "" {
					return "e.g. Internal Root CA"
				}
				return e.site.Site + " Root CA (default)"
			}),
		newText("Organization", "Your organization, written into the CA and, by default, into client identities.",
			"ca.subject.organization", text(func(s *steps.Site) *string { return &s.CA.Subject.Organization })),
		newText("Country", "Two capital letters (NO, DE, US), or empty.",
			"ca.subject.country", text(func(s *steps.Site) *string { return &s.CA.Subject.Country })),
		newSelect("Key type", "ECDSA P-256 is fast and widely supported; pick RSA-4096 only for old clients.",
			"ca.key", func(s *steps.Site) *string { return &s.CA.Key }, keyTypes),
		newText("CA validity", "How long the CA itself lives: 87600h is ten years; days work too (3650d).",
			"ca.validity", duration(func(s *steps.Site) *steps.Duration { return &s.CA.Validity })).
			withHint(def(steps.DefaultCAValidity)),
		newText("Certificates", "How long each server and client certificate lives before it is renewed.",
			"ca.cert_validity", duration(func(s *steps.Site) *steps.Duration { return &s.CA.CertValidity })).
			withHint(def(steps.DefaultCertValidity)),
		newText("CRL validity", "How long a revocation list stays valid; a timer re-signs it well before.",
			"ca.crl_validity", duration(func(s *steps.Site) *steps.Duration { return &s.CA.CRLValidity })).
			withHint(def(steps.DefaultCRLValidity)),
	)
}

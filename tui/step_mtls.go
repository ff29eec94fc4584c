package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"ztwizard/steps"
)

// mtlsPage describes the client identities and the services that admit
// only them.
func mtlsPage(*model) *formPage {
	return newFormPage(stepMTLS,
		"nginx fronts each internal HTTP service and admits only clients holding a certificate of "+
			"your CA that are on its allow list.",
		newList("Client identities", "Who may call your services: each gets a certificate (and a PKCS#12 bundle).", clientItems()),
		newList("Services", "HTTP services behind nginx with mutual TLS. Add the clients first.", serviceItems()),
	)
}

// clientItems are the site's mTLS client identities.
func clientItems() itemKind {
	return &items[steps.Client]{
		nounS: "client", pathS: "clients",
		intro: "A client identity: a certificate whose CN is its name, for curl, browsers or workers.",
		list:  func(s *steps.Site) *[]steps.Client { return &s.Clients },
		clone: func(c steps.Client) steps.Client { return c },
		fresh: func(*env) steps.Client { return steps.Client{} },
		nameOf: func(c steps.Client) string {
			return c.Name
		},
		cols: func(e *env, _ int, c steps.Client) []string {
			org := c.Organization
			if org == "" {
				org = e.site.CA.Subject.Organization
			}
			return []string{orNew(c.Name), org}
		},
		editor: func(i int) []field {
			c := func(s *steps.Site) *steps.Client { return &s.Clients[i] }
			p := func(f string) string { return fmt.Sprintf("clients[%d].%s", i, f) }
			return []field{
				newText("Name", "The identity's name, its certificate's CN: e.g. service-worker-01.",
					p("name"), text(func(s *steps.Site) *string { return &c(s).Name })),
				newText("Organization", "Written into its certificate; empty takes the CA's.",
					p("organization"), text(func(s *steps.Site) *string { return &c(s).Organization })).
					withHint(func(e *env) string {
						if o := e.site.CA.Subject.Organization; o != "" {
							return o + " (the CA's)"
						}
						return "none"
					}),
			}
		},
		usedBy: func(s *steps.Site, name string) []string {
			var out []string
			for _, sv := range s.Services {
				if slices.Contains(sv.Allow, name) {
					out = append(out, fmt.Sprintf("service %s no longer lets it in (mTLS services)", orNew(sv.Name)))
				}
			}
			return out
		},
		forget: func(s *steps.Site, name string) {
			for i := range s.Services {
				s.Services[i].Allow = without(s.Services[i].Allow, name)
			}
		},
		follow: func(s *steps.Site, old, name string) {
			for i := range s.Services {
				rename(s.Services[i].Allow, old, name)
			}
		},
	}
}

// serviceItems are the site's mTLS services.
func serviceItems() itemKind {
	return &items[steps.Service]{
		nounS: "service", pathS: "services",
		intro: "An internal HTTP service: nginx on its node terminates mutual TLS and passes allowed calls on.",
		list:  func(s *steps.Site) *[]steps.Service { return &s.Services },
		clone: func(v steps.Service) steps.Service { v.Allow = slices.Clone(v.Allow); return v },
		fresh: func(e *env) steps.Service {
			sv := steps.Service{Listen: steps.DefaultHTTPSPort}
			if n := nodeNames(e.site); len(n) > 0 {
				sv.Node = n[0]
			}
			return sv
		},
		nameOf: func(v steps.Service) string { return v.Name },
		cols: func(_ *env, _ int, v steps.Service) []string {
			url := "https://" + v.ServerName
			if v.Listen != 0 && v.Listen != steps.DefaultHTTPSPort {
				url += ":" + strconv.Itoa(v.Listen)
			}
			return []string{orNew(v.Name), "on " + v.Node, url, "→ " + v.Upstream, "allow " + strings.Join(v.Allow, " ")}
		},
		editor: func(i int) []field {
			sv := func(s *steps.Site) *steps.Service { return &s.Services[i] }
			p := func(f string) string { return fmt.Sprintf("services[%d].%s", i, f) }
			return []field{
				newText("Name", "A short name for the service: lower-case letters, digits and hyphens.",
					p("name"), text(func(s *steps.Site) *string { return &sv(s).Name })),
				newSelect("Node", "The node whose nginx serves it.",
					p("node"), func(s *steps.Site) *string { return &sv(s).Node }, nodeOptions),
				newText("Server name", "The DNS name clients call it by; it goes into its certificate.",
					p("server_name"), text(func(s *steps.Site) *string { return &sv(s).ServerName })).
					withHint(func(*env) string { return "e.g. api.internal.example.com" }),
				newText("Listen port", "The HTTPS port nginx listens on; the Firewall step opens it.",
					p("listen"), number(func(s *steps.Site) *int { return &sv(s).Listen })).
					withHint(func(*env) string { return fmt.Sprintf("%d (default)", steps.DefaultHTTPSPort) }),
				newText("Upstream", "Where nginx passes allowed calls: an http:// or https:// URL.",
					p("upstream"), text(func(s *steps.Site) *string { return &sv(s).Upstream })).
					withHint(func(*env) string { return "e.g. http://127.0.0.1:8080" }),
				newMulti("Allowed clients", "The client identities it admits: space ticks, ←/→ move.",
					p("allow"), func(s *steps.Site) *[]string { return &sv(s).Allow },
					func(e *env) []string {
						var out []string
						for _, c := range e.site.Clients {
							if c.Name != "" {
								out = append(out, c.Name)
							}
						}
						return out
					}, "no client identities yet: add them above first"),
			}
		},
	}
}

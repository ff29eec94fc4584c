package authority

import (
	"ztwizard/steps"
	"ztwizard/steps/pki"
)

// CheckIssue tells what `Issue(name, keyType)` would issue (KindClient or
// KindServer) or why it cannot, without touching the store, so a command
// can refuse bad input before it writes anything.
func CheckIssue(site *steps.Site, name, keyType string) (kind string, err error) {
	switch {
	case isClient(site, name):
		kind = KindClient
	case isService(site, name):
		kind = KindServer
	default:
		var names []string
		for _, c := range site.Clients {
			names = append(names, c.Name)
		}
		for _, s := range site.Services {
			names = append(names, s.Name)
		}
		return "", badInput("unknown client or service %q%s; the site has %v", name, steps.Suggest(name, names), names)
	}
	if keyType != "" {
		if _, err := pki.ParseKeyType(keyType); err != nil {
			return "", badInput("--key: %v", err)
		}
	}
	return kind, nil
}

// CheckUser tells whether the site has that SSH user.
func CheckUser(site *steps.Site, user string) error {
	if _, ok := site.User(user); ok {
		return nil
	}
	var names []string
	for _, u := range site.SSH.Users {
		names = append(names, u.Name)
	}
	return badInput("unknown SSH user %q%s; the site has %v", user, steps.Suggest(user, names), names)
}

// CheckNode tells whether the site has that node.
func CheckNode(site *steps.Site, node string) error {
	if _, ok := site.Node(node); ok {
		return nil
	}
	var names []string
	for _, n := range site.Nodes {
		names = append(names, n.Name)
	}
	return badInput("unknown node %q%s; the site has %v", node, steps.Suggest(node, names), names)
}

func isClient(site *steps.Site, name string) bool  { _, ok := site.Client(name); return ok }
func isService(site *steps.Site, name string) bool { _, ok := site.Service(name); return ok }

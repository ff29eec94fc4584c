package tui

import (
	"errors"
	"strings"

	"ztwizard/steps"
)

// stepID names a step of the wizard; the steps run in this order.
type stepID int

const (
	stepWelcome stepID = iota
	stepCA
	stepMesh
	stepMTLS
	stepSSH
	stepFirewall
	stepDatabases
	stepReview
	stepFinish
	stepCount
)

// stepNames are the steps' titles: short for the sidebar, long above the page.
var stepNames = [stepCount]struct{ short, long string }{
	{"Welcome", "Welcome"},
	{"Certificate authority", "Certificate authority"},
	{"WireGuard mesh", "WireGuard mesh and nodes"},
	{"mTLS services", "mTLS services and client identities"},
	{"SSH users", "SSH users and principals"},
	{"Firewall", "Firewall"},
	{"Databases", "Databases"},
	{"Review", "Review"},
	{"Finish", "Finish"},
}

// stepPaths are the site field paths each step edits: an error at one of
// them (or below it) belongs to that step.
var stepPaths = map[stepID][]string{
	stepWelcome:   {"version", "site"},
	stepCA:        {"ca"},
	stepMesh:      {"wireguard", "nodes"},
	stepMTLS:      {"clients", "services"},
	stepSSH:       {"ssh"},
	stepFirewall:  {"firewall"},
	stepDatabases: {"databases"},
}

// ownerOf is the step where a problem is fixed. It is the step of the
// problem's path, except that a service port missing from the public ports
// is fixed on the Firewall step, which comes later: the service step only
// mentions it.
func ownerOf(e steps.FieldError) stepID {
	if publicPortProblem(e) {
		return stepFirewall
	}
	for id := stepWelcome; id < stepReview; id++ {
		for _, p := range stepPaths[id] {
			if under(e.Path, p) {
				return id
			}
		}
	}
	return stepReview
}

// publicPortProblem tells a service whose port the firewall does not open.
func publicPortProblem(e steps.FieldError) bool {
	return strings.HasPrefix(e.Path, "services[") && strings.HasSuffix(e.Path, ".listen") &&
		strings.Contains(e.Msg, "firewall.public_tcp")
}

// under tells whether path is p or lies below it ("nodes[1].name" is under
// "nodes" and "nodes[1]").
func under(path, p string) bool {
	if !strings.HasPrefix(path, p) {
		return false
	}
	rest := path[len(p):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}

// validate checks the site with the loader's rules: Site.Validate.
func validate(site *steps.Site) steps.Errors {
	err := site.Validate()
	if err == nil {
		return nil
	}
	var list steps.Errors
	if errors.As(err, &list) {
		return list
	}
	return steps.Errors{{Msg: err.Error()}}
}

// ownedBy returns the problems a step must see fixed before it is left.
func ownedBy(errs steps.Errors, id stepID) steps.Errors {
	var out steps.Errors
	for _, e := range errs {
		if ownerOf(e) == id {
			out = append(out, e)
		}
	}
	return out
}

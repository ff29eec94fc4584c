// Package monitor says what runs out and when: on the CA host every
// certificate in the index, the CRL and the CAs; on a node what its applied
// bundle installed. It flags what is within its warning window, and writes
// the result as JSON or as metrics for node_exporter's textfile collector.
package monitor

import (
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/bundle"
)

// Warning windows: an item is due once its end is this close.
const (
	// CAWindow is for the X.509 and SSH CAs: a year, the time a rotation
	// with an overlap needs.
	CAWindow = steps.CAWindow
	// LeafWindow is for server, client and SSH host certificates.
	LeafWindow = authority.WarnWithin
	// CRLWindow is for the CRL's nextUpdate.
	CRLWindow = authority.WarnCRLWithin
)

// Sources of an item.
const (
	SourceCA   = "ca"   // the CA host's state folder and index
	SourceNode = "node" // what the node's last applied bundle installed
)

// States of an item.
const (
	StateOK      = "ok"
	StateDue     = "due"
	StateExpired = "expired"
)

// Item is one thing that runs out. Its JSON field names are part of the
// `status --json` contract (see the README).
type Item struct {
	Source   string    `json:"source"`           // SourceCA or SourceNode
	Kind     string    `json:"kind"`             // x509-ca, x509-server, x509-client, ssh-host, ssh-user, crl, ...
	Name     string    `json:"name"`             // CN, service, client, node or user
	Serial   string    `json:"serial,omitempty"` // as `ca list` prints it
	NotAfter time.Time `json:"not_after"`        // a certificate's end, a CRL's nextUpdate
	WarnFrom time.Time `json:"warn_from"`        // from when it is due
	State    string    `json:"state"`            // StateOK, StateDue or StateExpired
	Due      bool      `json:"due"`              // State is not StateOK
}

// Report is everything status knows that runs out.
type Report struct {
	Generated time.Time `json:"generated"`
	Node      string    `json:"node,omitempty"` // the node whose bundle is applied here
	Site      string    `json:"site,omitempty"`
	Due       int       `json:"due"` // items due or expired, plus Problems
	Items     []Item    `json:"items"`
	// Problems are conditions that are not an item's expiry but will make
	// one lapse, e.g. a CA that cannot refresh its CRL unattended.
	Problems []Problem `json:"problems,omitempty"`
	windows  Windows   // what judged the items
}

// Problem is a condition that makes something lapse by Deadline unless an
// admin acts.
type Problem struct {
	What     string    `json:"what"`
	Deadline time.Time `json:"deadline,omitzero"`
}

// Windows are the warning windows of a site: Default for a real site,
// shorter ones from a test timescale's steps.Timing.
type Windows struct {
	CA, Leaf, CRL time.Duration
}

// Default is the real sites' windows: CAWindow, LeafWindow, CRLWindow.
var Default = Windows{CA: CAWindow, Leaf: LeafWindow, CRL: CRLWindow}

// SiteWindows is the windows of a site's clock.
func SiteWindows(t steps.Timing) Windows {
	return Windows{CA: t.CAWindow, Leaf: t.LeafWindow, CRL: t.CRLWindow}
}

// Window is the warning window of an item of kind on a real site.
func Window(kind string) time.Duration {
	return Default.Window(kind)
}

// Window is the warning window of an item of kind.
func (w Windows) Window(kind string) time.Duration {
	switch kind {
	case authority.KindCA, authority.KindSSHUserCA, authority.KindSSHHostCA:
		return w.CA
	case authority.KindCRL:
		return w.CRL
	case authority.KindSSHUser:
		return 0 // hours by design: listed, never flagged until it ends
	}
	return w.Leaf
}

// NewItem is the item for kind, name and serial that runs out at notAfter,
// judged at now with a real site's windows.
func NewItem(source, kind, name, serial string, notAfter, now time.Time) Item {
	return Default.Item(source, kind, name, serial, notAfter, now)
}

// Item is the item for kind, name and serial that runs out at notAfter,
// judged at now with the windows w.
func (w Windows) Item(source, kind, name, serial string, notAfter, now time.Time) Item {
	it := Item{Source: source, Kind: kind, Name: name, Serial: serial, NotAfter: notAfter.UTC(),
		WarnFrom: notAfter.Add(-w.Window(kind)).UTC(), State: StateOK}
	switch {
	case !now.Before(notAfter):
		it.State = StateExpired
	case !now.Before(it.WarnFrom):
		it.State = StateDue
	}
	// An SSH user certificate lives for hours and is signed again on
	// demand: its end is no alarm.
	it.Due = it.State != StateOK && kind != authority.KindSSHUser
	return it
}

// Build makes the report from the CA host's expiries (nil on a node
// without a CA) and the node's held bundle (nil where none was applied),
// with a real site's windows.
func Build(now time.Time, ca []authority.Expiry, held *bundle.Held) *Report {
	return Default.Build(now, ca, held)
}

// Build makes the report as the package's Build does, with the windows w.
func (w Windows) Build(now time.Time, ca []authority.Expiry, held *bundle.Held) *Report {
	r := &Report{Generated: now.UTC(), Items: []Item{}, windows: w}
	for _, e := range ca {
		r.Items = append(r.Items, w.Item(SourceCA, e.Kind, e.Name, e.Serial, e.NotAfter, now))
	}
	if held != nil {
		r.Node, r.Site = held.Node, held.Site
		for _, e := range held.Expiries {
			kind, name := heldKind(e.What, held.Node)
			r.Items = append(r.Items, w.Item(SourceNode, kind, name, "", e.NotAfter, now))
		}
	}
	slices.SortStableFunc(r.Items, func(x, y Item) int { return x.NotAfter.Compare(y.NotAfter) })
	r.count()
	return r
}

// HeldItem is the item for e, one expiry of node's applied bundle.
func HeldItem(e bundle.Expiry, node string, now time.Time) Item {
	kind, name := heldKind(e.What, node)
	return NewItem(SourceNode, kind, name, "", e.NotAfter, now)
}

// AddProblem records p; the report counts it as due.
func (r *Report) AddProblem(p Problem) {
	r.Problems = append(r.Problems, p)
	r.count()
}

func (r *Report) count() {
	r.Due = len(r.Problems)
	for _, it := range r.Items {
		if it.Due {
			r.Due++
		}
	}
}

// heldKind maps bundle.Expiry's What to an item's kind and name.
func heldKind(what, node string) (kind, name string) {
	switch {
	case what == "CRL":
		return authority.KindCRL, "revocation list"
	case strings.HasPrefix(what, "CA "):
		return authority.KindCA, strings.TrimPrefix(what, "CA ")
	case strings.HasPrefix(what, "service "):
		return authority.KindServer, strings.TrimPrefix(what, "service ")
	case what == "SSH host certificate":
		return authority.KindSSHHost, node
	}
	return "other", what
}

// UseInstalledEnd replaces the node's item of kind and name (from its
// bundle) with notAfter, the end of what is installed on the node, when
// that runs longer: a pull installs renewed server and SSH host
// certificates between bundles.
func (r *Report) UseInstalledEnd(kind, name string, notAfter, now time.Time) {
	for i, it := range r.Items {
		if it.Source == SourceNode && it.Kind == kind && it.Name == name && notAfter.After(it.NotAfter) {
			r.Items[i] = r.windows.Item(SourceNode, it.Kind, it.Name, it.Serial, notAfter, now)
		}
	}
	slices.SortStableFunc(r.Items, func(x, y Item) int { return x.NotAfter.Compare(y.NotAfter) })
	r.count()
}

// UseInstalledCRL replaces the node's CRL item (from its bundle) with the
// CRL installed on the node, crlPEM, when that one runs longer: a node
// that pulls its CRL from the CA host holds a newer one than its bundle
// brought, and a pull that keeps failing shows as that CRL nearing its
// nextUpdate.
func (r *Report) UseInstalledCRL(crlPEM []byte, now time.Time) {
	// During a CA rotation the file holds a CRL of each CA: the soonest
	// nextUpdate counts.
	var next time.Time
	for rest := crlPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			return
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return
		}
		if next.IsZero() || crl.NextUpdate.Before(next) {
			next = crl.NextUpdate
		}
	}
	if next.IsZero() {
		return
	}
	for i, it := range r.Items {
		if it.Source == SourceNode && it.Kind == authority.KindCRL && next.After(it.NotAfter) {
			r.Items[i] = r.windows.Item(SourceNode, it.Kind, it.Name, it.Serial, next, now)
		}
	}
	slices.SortStableFunc(r.Items, func(x, y Item) int { return x.NotAfter.Compare(y.NotAfter) })
	r.count()
}

package image

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/bundle"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

// fromBundle turns a seed's bundle into files and units: it checks the
// bundle against the CA certificate the golden image carries (for the
// seed's node, site and a serial above what the node applied), builds the
// node's plan from it and puts the plan's files and enabled units before
// the seed's own. It records the bundle as applied in the node's state
// folder, so that later bundles from the CA host need no fingerprint.
func (fb FirstBoot) fromBundle(c *Content, now time.Time) (func() error, error) {
	caPEM, err := os.ReadFile(filepath.Join(fb.Root, steps.CACertPath))
	if err != nil {
		return nil, fmt.Errorf("image: seed bundle: the image's CA certificate: %w", err)
	}
	ca, err := pki.DecodeCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("image: seed bundle: %s: %w", steps.CACertPath, err)
	}
	store, err := state.Open(filepath.Join(fb.Root, steps.DefaultStateDir))
	if err != nil {
		return nil, fmt.Errorf("image: seed bundle: %w", err)
	}
	held, err := bundle.LoadHeld(store)
	if err != nil {
		return nil, err
	}
	trust := bundle.Trust{CACert: ca, Node: c.Node}
	if held != nil {
		if trust, err = bundle.TrustFor(held, ""); err != nil {
			return nil, err
		}
	}
	p, err := bundle.Open(c.Bundle, trust, now)
	if err != nil {
		return nil, fmt.Errorf("image: seed: %w", err)
	}
	if p.Site != c.Site || p.Node != c.Node {
		return nil, fmt.Errorf("image: seed: its bundle is node %q of site %q, the seed names node %q of site %q", p.Node, p.Site, c.Node, c.Site)
	}
	plan, err := p.Plan(fb.Root, now)
	if err != nil {
		return nil, fmt.Errorf("image: seed: %w", err)
	}
	files := slices.Clone(plan.Files)
	for _, f := range c.Files {
		if !slices.ContainsFunc(files, func(g steps.File) bool { return g.Path == f.Path }) {
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b steps.File) int { return cmp.Compare(a.Path, b.Path) })
	var enable []string
	for _, u := range plan.Units {
		if u.Enable {
			enable = append(enable, u.Name)
		}
	}
	for _, u := range c.Enable {
		if !slices.Contains(enable, u) {
			enable = append(enable, u)
		}
	}
	c.Files, c.Enable = files, enable
	return func() error { return bundle.SaveHeld(store, p, now) }, nil
}

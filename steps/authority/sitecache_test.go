package authority

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ztwizard/steps"
	"ztwizard/steps/state"
)

// TestSiteYAMLCache: the canonical site comes from the cache only for the
// very source it was made from; another site, a missing, cut or edited
// cache is never taken, and a dry run writes nothing.
func TestSiteYAMLCache(t *testing.T) {
	srcA := steps.ExampleYAML
	srcB := []byte(strings.Replace(string(steps.ExampleYAML), "192.168.1.100:51820", "192.168.1.100:51821", 1))
	if bytes.Equal(srcA, srcB) {
		t.Fatal("the example has no endpoint to change")
	}
	parse := func(src []byte) *steps.Site {
		s, err := steps.Parse(src, "site.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	siteA, siteB := parse(srcA), parse(srcB)
	wantA, _ := siteA.Marshal()
	wantB, _ := siteB.Marshal()
	a, _ := newAuthority(t, "")
	cache := filepath.Join(a.Store.Dir(), SiteCacheFile)
	check := func(what string, site *steps.Site, src, want []byte) {
		t.Helper()
		a.Site = site
		got, err := a.SiteYAML(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: SiteYAML is not the site's own canonical form", what)
		}
		data, err := os.ReadFile(cache)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if _, y, _ := bytes.Cut(data, []byte("\n")); !bytes.Equal(y, want) {
			t.Fatalf("%s: the cache does not hold the site's canonical form", what)
		}
	}
	check("no cache", siteA, srcA, wantA)
	check("cached", siteA, srcA, wantA)
	// Another source: the cache of the first is not taken.
	check("another site", siteB, srcB, wantB)
	check("back to the first", siteA, srcA, wantA)

	// The cached text edited, its header kept: the sum no longer holds.
	data, _ := os.ReadFile(cache)
	edited := bytes.Replace(data, []byte("192.168.1.100:51820"), []byte("192.168.1.99:51820"), 1)
	if bytes.Equal(edited, data) {
		t.Fatal("nothing to edit in the cache")
	}
	os.WriteFile(cache, edited, 0o600)
	check("edited cache", siteA, srcA, wantA)
	// Cut short, or only a header.
	os.WriteFile(cache, data[:len(data)/2], 0o600)
	check("cut cache", siteA, srcA, wantA)
	head, _, _ := bytes.Cut(data, []byte("\n"))
	os.WriteFile(cache, head, 0o600)
	check("header only", siteA, srcA, wantA)
	os.Remove(cache)
	check("removed cache", siteA, srcA, wantA)

	// A dry run answers without writing.
	dry, err := state.OpenDryRun(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	d := &Authority{Store: dry, Site: siteB}
	if got, err := d.SiteYAML(srcB); err != nil || !bytes.Equal(got, wantB) {
		t.Fatalf("dry run: %v", err)
	}
	if changes, _ := dry.Pending(); len(changes) != 0 {
		t.Fatalf("a dry run would write %v", changes)
	}
}

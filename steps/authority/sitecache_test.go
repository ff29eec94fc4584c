package authority

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
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

// TestParsedSiteCache: a site comes from the parse cache only for the very
// source it was recorded for, whole and as recorded; another source, an
// edited, cut or linked cache is never taken; a dry run records nothing,
// and neither is a site JSON would not bring back exactly.
func TestParsedSiteCache(t *testing.T) {
	srcA := steps.ExampleYAML
	srcB := []byte(strings.Replace(string(steps.ExampleYAML), "192.168.1.100:51820", "192.168.1.100:51821", 1))
	parse := func(src []byte) *steps.Site {
		s, err := steps.Parse(src, "site.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, _ := newAuthority(t, "")
	dir := a.Store.Dir()
	cache := filepath.Join(dir, ParsedCacheFile)
	taken := func(src []byte) *steps.Site {
		t.Helper()
		site, ok := CachedParse(dir, src)
		if !ok {
			return nil
		}
		return site
	}
	if taken(srcA) != nil {
		t.Fatal("a site was taken from a store with no cache")
	}

	a.Site = parse(srcA)
	if err := a.RecordParsed(srcA); err != nil {
		t.Fatal(err)
	}
	if got := taken(srcA); got == nil || !reflect.DeepEqual(got, parse(srcA)) {
		t.Fatalf("the cached site is not the parsed one: %+v", got)
	}
	if taken(srcB) != nil {
		t.Fatal("the cache of one source was taken for another")
	}
	// What is taken is what was recorded: nothing is parsed.
	a.Site = parse(srcB)
	if err := a.RecordParsed(srcA); err != nil {
		t.Fatal(err)
	}
	if got := taken(srcA); got == nil || !reflect.DeepEqual(got, a.Site) || reflect.DeepEqual(got, parse(srcA)) {
		t.Fatal("the cache was not read: the site taken is not the one recorded")
	}

	a.Site = parse(srcA)
	if err := a.RecordParsed(srcA); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(cache); fi.Mode().Perm() != 0o600 {
		t.Errorf("cache mode %v, want 0600", fi.Mode().Perm())
	}
	bad := map[string][]byte{
		"a byte of the body changed": append(bytes.Clone(data[:len(data)-1]), data[len(data)-1]^1),
		"cut short":                  data[:len(data)-10],
		"header only":                data[:bytes.IndexByte(data, '\n')],
		"empty":                      nil,
	}
	for what, b := range bad {
		if err := os.WriteFile(cache, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if taken(srcA) != nil {
			t.Errorf("%s: the cache was taken", what)
		}
	}
	// A link in its place, even to a good cache, is not followed.
	good := filepath.Join(t.TempDir(), "good")
	if err := os.WriteFile(good, data, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(cache)
	if err := os.Symlink(good, cache); err != nil {
		t.Fatal(err)
	}
	if taken(srcA) != nil {
		t.Error("a link to a cache was followed")
	}
	os.Remove(cache)

	// A string JSON would not bring back (not UTF-8): not recorded.
	odd := parse(srcA)
	odd.Site = "oslo\xff"
	a.Site = odd
	if err := a.RecordParsed(srcA); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a site JSON changes was recorded: %v", err)
	}

	// A dry run records nothing.
	dry, err := state.OpenDryRun(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	d := &Authority{Store: dry, Site: parse(srcB)}
	if err := d.RecordParsed(srcB); err != nil {
		t.Fatal(err)
	}
	if changes, _ := dry.Pending(); len(changes) != 0 {
		t.Fatalf("a dry run would write %v", changes)
	}
}

package authority

import (
	"strings"
	"testing"
	"time"

	"ztwizard/steps/state"
)

func TestRenewDue(t *testing.T) {
	from := t0
	for _, tc := range []struct {
		life, at time.Duration
		due      bool
	}{
		{360 * 24 * time.Hour, 239 * 24 * time.Hour, false},
		{360 * 24 * time.Hour, 240 * 24 * time.Hour, true}, // two thirds
		{90 * 24 * time.Hour, 59 * 24 * time.Hour, false},
		{90 * 24 * time.Hour, 60 * 24 * time.Hour, true},
		{20 * 24 * time.Hour, time.Hour, true}, // shorter than WarnWithin: always
	} {
		if got := RenewDue(from, from.Add(tc.life), from.Add(tc.at)); got != tc.due {
			t.Errorf("life %v at %v: due %v, want %v", tc.life, tc.at, got, tc.due)
		}
	}
}

// With a year-long leaf validity, a node's server certificate and SSH host
// certificate are renewed at two thirds of their life (not only 30 days
// before their end), for the same key, the old ones superseded.
func TestRenewAtTwoThirds(t *testing.T) {
	site := fleetSite(t, "admin.internal.example.com")
	site.CA.CertValidity = "8640h" // 360 days
	a, clk := newFleetAuthority(t, site)
	request(t, a, "web")
	if _, _, err := a.Bundle("web"); err != nil {
		t.Fatal(err)
	}
	count := func(kind, name string) int {
		ix, err := a.Store.Index()
		if err != nil {
			t.Fatal(err)
		}
		return len(ix.Find(kind, name))
	}
	bundleAt := func(days int) {
		t.Helper()
		clk.now = t0.Add(time.Duration(days) * 24 * time.Hour)
		if _, _, err := a.Bundle("web"); err != nil {
			t.Fatal(err)
		}
	}
	bundleAt(230)
	if count(KindServer, "api") != 1 || count(KindSSHHost, "web") != 1 {
		t.Fatalf("renewed before two thirds: %d server, %d host certificates", count(KindServer, "api"), count(KindSSHHost, "web"))
	}
	bundleAt(241)
	if count(KindServer, "api") != 2 || count(KindSSHHost, "web") != 2 {
		t.Fatalf("not renewed at two thirds: %d server, %d host certificates", count(KindServer, "api"), count(KindSSHHost, "web"))
	}
	ix, _ := a.Store.Index()
	for _, kind := range []string{KindServer, KindSSHHost} {
		var recs []state.Record
		if kind == KindServer {
			recs = ix.Find(kind, "api")
		} else {
			recs = ix.Find(kind, "web")
		}
		if recs[0].SupersededAt == nil || recs[0].RevokedAt != nil {
			t.Errorf("%s: the old certificate is not superseded (and must not be revoked): %+v", kind, recs[0])
		}
	}
}

// On a test timescale (10 minute leaves, a 3 minute CRL) a node's server
// and SSH host certificates are renewed at two thirds of their life, not
// at every bundle (a real site's 30-day window would hold every such leaf
// due), and the CRL is re-signed at half its life.
func TestRenewTestTimescale(t *testing.T) {
	site := fleetSite(t, "admin.internal.example.com")
	site.CA.TestTimescale = true
	site.CA.CertValidity, site.CA.CRLValidity = "10m", "3m"
	if err := site.Validate(); err != nil {
		t.Fatal(err)
	}
	a, clk := newFleetAuthority(t, site)
	request(t, a, "web")
	if _, _, err := a.Bundle("web"); err != nil {
		t.Fatal(err)
	}
	count := func(kind, name string) int {
		ix, err := a.Store.Index()
		if err != nil {
			t.Fatal(err)
		}
		return len(ix.Find(kind, name))
	}
	bundleAt := func(at time.Duration) {
		t.Helper()
		clk.now = t0.Add(at)
		if _, _, err := a.Bundle("web"); err != nil {
			t.Fatal(err)
		}
	}
	// Valid from 5 minutes before issue (pki.Backdate) for 15: two thirds
	// is 5 minutes after issue.
	bundleAt(4 * time.Minute)
	if count(KindServer, "api") != 1 || count(KindSSHHost, "web") != 1 {
		t.Fatalf("renewed before two thirds: %d server, %d host certificates", count(KindServer, "api"), count(KindSSHHost, "web"))
	}
	bundleAt(6 * time.Minute)
	if count(KindServer, "api") != 2 || count(KindSSHHost, "web") != 2 {
		t.Fatalf("not renewed at two thirds: %d server, %d host certificates", count(KindServer, "api"), count(KindSSHHost, "web"))
	}
	if _, err := a.CRL(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after time.Duration
		due   bool
	}{{80 * time.Second, false}, {91 * time.Second, true}} {
		clk.now = t0.Add(6*time.Minute + tc.after)
		if due, err := a.CRLDue(); err != nil || due != tc.due {
			t.Errorf("a 3m CRL %v after signing: due %v (%v), want %v", tc.after, due, err, tc.due)
		}
	}
}

// RenewLeaves gives every node whose keys the CA knows its certificates
// only (no key), makes nothing for a node it knows nothing of, and a node
// whose request no longer fits the site fails alone: the others' leaves
// still come, the error names it.
func TestRenewLeaves(t *testing.T) {
	site := fleetSite(t, "admin.internal.example.com")
	a, _ := newFleetAuthority(t, site)
	request(t, a, "web")
	if _, _, err := a.Bundle("db"); err != nil { // db's keys made here
		t.Fatal(err)
	}
	leaves, err := a.RenewLeaves()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Leaves{}
	for _, l := range leaves {
		got[l.Node] = l
		for svc, c := range l.Servers {
			if strings.Contains(string(c), "PRIVATE KEY") {
				t.Errorf("%s/%s: a key among the leaves", l.Node, svc)
			}
		}
	}
	if len(got["web"].Servers) != 1 || got["web"].HostCert == nil || len(got["db"].Servers) != 1 {
		t.Fatalf("leaves: %+v", leaves)
	}
	if _, ok := got["log"]; ok {
		t.Fatal("leaves made for log, whose keys the CA does not know")
	}
	// web's request no longer fits: its service moved to another name.
	for i := range a.Site.Services {
		if a.Site.Services[i].Node == "web" {
			a.Site.Services[i].Name = "api2"
		}
	}
	leaves, err = a.RenewLeaves()
	if err == nil || !strings.Contains(err.Error(), "node web") {
		t.Fatalf("a request that no longer fits: %v", err)
	}
	if len(leaves) != 1 || leaves[0].Node != "db" {
		t.Fatalf("the other nodes' leaves: %+v", leaves)
	}
}

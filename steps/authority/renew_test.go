package authority

import (
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

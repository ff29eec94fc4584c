package steps

import (
	"net/netip"
	"path"
	"strings"
	"testing"
	"time"
)

// testTimescaleSite is the example site on a test timescale: a CRL of 3
// minutes, leaves of 10, the CA host db.
func testTimescaleSite(t *testing.T) *Site {
	t.Helper()
	site := Example().Clone()
	site.CA.Host = "db"
	site.CA.TestTimescale = true
	site.CA.CRLValidity, site.CA.CertValidity, site.SSH.CertValidity = "3m", "10m", "2m"
	if err := site.Validate(); err != nil {
		t.Fatalf("a test-timescale site is refused: %v", err)
	}
	return site
}

// Validities of minutes are bad input for a real site, each named with its
// field and value, and fine with ca.test_timescale.
func TestTestTimescaleValidation(t *testing.T) {
	testTimescaleSite(t)
	site := Example().Clone()
	site.CA.CRLValidity, site.CA.CertValidity = "3m", "10m"
	err := site.Validate()
	if err == nil {
		t.Fatal("a real site with a 3m CRL and 10m leaves is valid")
	}
	for _, want := range []string{
		`ca.crl_validity: "3m" is too short to refresh before it lapses (at least 2h; minutes only with ca.test_timescale, for tests)`,
		`ca.cert_validity: "10m" is too short to renew before it lapses (at least 24h; minutes only with ca.test_timescale, for tests)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	site.CA.TestTimescale = true
	site.CA.CRLValidity = "59s"
	if err := site.Validate(); err == nil || !strings.Contains(err.Error(), `ca.crl_validity: "59s" is too short to refresh before it lapses (at least 1m)`) {
		t.Errorf("a 59s CRL on a test timescale: %v", err)
	}
}

func TestTiming(t *testing.T) {
	real := Example().Timing()
	want := Timing{CRLCheck: 6 * time.Hour, Pull: 5 * time.Minute, PullJitter: time.Minute, Status: 15 * time.Minute,
		CRLMargin: 84 * time.Hour, LeafWindow: 15 * 24 * time.Hour, CRLWindow: 24 * time.Hour, CAWindow: 365 * 24 * time.Hour}
	if real != want {
		t.Errorf("a real site's timing\n got %+v\nwant %+v", real, want)
	}
	test := testTimescaleSite(t).Timing()
	want = Timing{CRLCheck: 15 * time.Second, Pull: 15 * time.Second, PullJitter: 3 * time.Second, Status: 15 * time.Second,
		Boot: 15 * time.Second, Accuracy: time.Second, CRLMargin: 90 * time.Second, LeafWindow: 100 * time.Second,
		CRLWindow: 22500 * time.Millisecond, CAWindow: 365 * 24 * time.Hour}
	if test != want {
		t.Errorf("a test site's timing\n got %+v\nwant %+v", test, want)
	}
	// Leaves shorter than 18 CRL checks set the pace; never under 5s.
	s := testTimescaleSite(t)
	s.CA.CertValidity = "3m"
	if got := s.Timing().Pull; got != 10*time.Second {
		t.Errorf("3m leaves: pull every %v, want 10s", got)
	}
	s.CA.CRLValidity, s.CA.CertValidity = "1m", "1m"
	if got := s.Timing().CRLCheck; got != 5*time.Second {
		t.Errorf("1m validities: check every %v, want 5s", got)
	}
}

// A node stays green while its CA host runs: the CRL re-signed at half its
// life and a leaf renewed at two thirds of its reach the node, at the
// latest one CA check, one pull and their jitter and accuracy later, with
// more of their life left than status flags, on every timescale.
func TestTimingKeepsNodesGreen(t *testing.T) {
	for _, tc := range []struct {
		crl, leaf Duration
		test      bool
	}{
		{"168h", "2160h", false}, {"2h", "24h", false}, {"24h", "720h", false}, {"720h", "8760h", false},
		{"2h", "8760h", false}, {"2160h", "24h", false},
		{"1m", "5m", true}, {"2m", "8m", true}, {"90s", "6m", true}, {"3m", "10m", true}, {"1h", "2m", true},
	} {
		s := Example().Clone()
		s.CA.CRLValidity, s.CA.CertValidity, s.CA.TestTimescale = tc.crl, tc.leaf, tc.test
		tm := s.Timing()
		acc := tm.Accuracy
		if acc == 0 {
			acc = time.Minute // systemd's default AccuracySec
		}
		late := tm.CRLCheck + tm.Pull + tm.PullJitter + 2*acc
		crl, leaf := tc.crl.D(), tc.leaf.D()
		if left := min(tm.CRLMargin, crl) - late; left <= tm.CRLWindow+tm.CRLWindow/8 {
			t.Errorf("crl %s, leaf %s (test %v): a fresh CRL reaches a node with %v left, status flags it from %v", tc.crl, tc.leaf, tc.test, left, tm.CRLWindow)
		}
		if left := leaf/3 - late; left <= tm.LeafWindow+tm.LeafWindow/8 {
			t.Errorf("crl %s, leaf %s (test %v): a renewed leaf reaches a node with %v left, status flags it from %v", tc.crl, tc.leaf, tc.test, left, tm.LeafWindow)
		}
		if tm.CRLWindow <= tm.Status {
			t.Errorf("crl %s: status runs every %v, too seldom for a window of %v", tc.crl, tm.Status, tm.CRLWindow)
		}
	}
}

// The timers of a test-timescale site run every few seconds; a real
// site's keep their production spans.
func TestTestTimescaleUnits(t *testing.T) {
	addrs := map[string]netip.Addr{"db": netip.MustParseAddr("10.100.0.1"), "web": netip.MustParseAddr("10.100.0.2")}
	for _, tc := range []struct {
		site                *Site
		crl, pull, jitter   string
		status, boot, boot2 string
	}{
		{testTimescaleSite(t), "15s", "15s", "3s", "15s", "15s", "15s"},
		{distSite(t), "360min", "5min", "1min", "15min", "2min", "1min"},
	} {
		content := map[string]string{}
		files, _, err := UnitFiles(tc.site, "web")
		if err != nil {
			t.Fatal(err)
		}
		dist, _, err := DistributionFiles(tc.site, "web", addrs)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := CAHostUnits(tc.site, "/etc/ztwizard/site.yaml", "/var/lib/ztwizard", true, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(files, dist...) {
			content[path.Base(f.Path)] = string(f.Content)
		}
		for _, f := range ca {
			content["ca/"+path.Base(f.Path)] = string(f.Content)
		}
		for unit, lines := range map[string][]string{
			CRLTimer:            {"OnUnitActiveSec=" + tc.crl, "OnBootSec=" + tc.boot},
			"ca/" + CACRLTimer:  {"OnUnitActiveSec=" + tc.crl},
			PullTimer:           {"OnUnitActiveSec=" + tc.pull, "RandomizedDelaySec=" + tc.jitter, "OnBootSec=" + tc.boot2},
			StatusTimer:         {"OnUnitActiveSec=" + tc.status},
			"ca/" + StatusTimer: {"OnUnitActiveSec=" + tc.status},
			"ca/" + StatusUnit:  {"status --state /var/lib/ztwizard --prometheus " + TextfilePath + " -c /etc/ztwizard/site.yaml"},
		} {
			for _, l := range lines {
				if !strings.Contains(content[unit], l+"\n") {
					t.Errorf("test timescale %v: %s has no %q:\n%s", tc.site.CA.TestTimescale, unit, l, content[unit])
				}
			}
			// Timers of seconds fire within a second, not systemd's
			// default minute; a real site's keep the default.
			if strings.HasSuffix(unit, ".timer") && strings.Contains(content[unit], "AccuracySec=1s\n") != tc.site.CA.TestTimescale {
				t.Errorf("test timescale %v: %s:\n%s", tc.site.CA.TestTimescale, unit, content[unit])
			}
		}
	}
}

package steps

import (
	"fmt"
	"time"
)

// Timing is a site's clock: how often its timers run and how close to its
// end each thing is renewed or flagged. Real sites get the fixed
// production values; a site with ca.test_timescale gets them scaled to its
// (then possibly minutes-long) validities, so a test sees CRL refreshes,
// pulls and leaf renewals within minutes. A lab without systemd runs the
// same schedule from these values.
type Timing struct {
	// CRLCheck is how often the CRL timers (the CA host's and a node's own)
	// look whether the CRL is due; on the CA host the same run renews the
	// leaves that are due.
	CRLCheck time.Duration
	// Pull is how often a node pulls the CRL, KRL and its own certificates
	// from the CA host; PullJitter is the timer's random delay.
	Pull, PullJitter time.Duration
	// Status is how often the status timer rewrites the expiry metrics.
	Status time.Duration
	// Boot is the delay of the first timer runs after boot; zero means
	// each timer's own production delay.
	Boot time.Duration
	// Accuracy is the timers' AccuracySec; zero means systemd's default
	// (a minute), fine for timers of minutes or hours.
	Accuracy time.Duration
	// CRLMargin: the CRL is re-signed once its nextUpdate is this close.
	CRLMargin time.Duration
	// LeafWindow: a server certificate or SSH host certificate is renewed
	// (besides at two thirds of its life) and flagged by status once its
	// end is this close. CRLWindow and CAWindow flag the CRL's nextUpdate
	// and a CA's end.
	LeafWindow, CRLWindow, CAWindow time.Duration
}

// Production timing, for every site without ca.test_timescale.
const (
	PullInterval       = 5 * time.Minute
	PullJitter         = time.Minute
	StatusInterval     = 15 * time.Minute
	LeafWindow         = 30 * 24 * time.Hour
	CRLWindow          = 24 * time.Hour
	CAWindow           = 365 * 24 * time.Hour
	minCRLCheck        = 10 * time.Minute
	maxCRLCheck        = 6 * time.Hour
	testMinInterval    = 5 * time.Second
	testAccuracy       = time.Second
	testFloorValidity  = time.Minute
	realFloorCRL       = 2 * time.Hour
	realFloorLeaf      = 24 * time.Hour
	testTimescaleField = "ca.test_timescale"
)

// Timing returns the site's clock (see Timing). The CRL is re-signed at
// half its validity and a node's server and SSH host certificates are
// renewed at two thirds of their life; status flags each well after the
// renewed one should have reached the node, so a node stays green while
// the CA host runs, and turns due long before anything lapses when it
// does not:
//
// Without ca.test_timescale the CRL timers look every twelfth of
// crl_validity or eighteenth of cert_validity, whichever is shorter (10 min
// to 6 h), nodes pull every 5 min, status runs every 15 min and flags the
// CRL a fifth of its validity (at most a day), leaves a sixth of
// cert_validity (at most 30 days) and CAs a year before their end.
//
// With ca.test_timescale the timers run on the same fractions (at least
// every 5 s) and fire within a second (AccuracySec), and status flags the
// CRL an eighth of its validity, leaves a sixth of theirs and CAs a quarter
// of theirs (at most a year) before their end.
func (s *Site) Timing() Timing {
	crl := s.CA.CRLValidity.D()
	if crl <= 0 {
		crl = DefaultCRLValidity.D()
	}
	leaf := s.CA.CertValidity.D()
	if leaf <= 0 {
		leaf = DefaultCertValidity.D()
	}
	if !s.CA.TestTimescale {
		return Timing{
			CRLCheck:   min(max(min(crl/12, leaf/18), minCRLCheck), maxCRLCheck).Truncate(time.Minute),
			Pull:       PullInterval,
			PullJitter: PullJitter,
			Status:     StatusInterval,
			CRLMargin:  crl / 2,
			LeafWindow: min(leaf/6, LeafWindow),
			CRLWindow:  min(crl/5, CRLWindow),
			CAWindow:   CAWindow,
		}
	}
	ca := s.CA.Validity.D()
	if ca <= 0 {
		ca = DefaultCAValidity.D()
	}
	every := min(max(min(crl/12, leaf/18), testMinInterval), maxCRLCheck)
	every = every.Truncate(time.Second)
	return Timing{
		CRLCheck:   every,
		Pull:       min(every, PullInterval),
		PullJitter: min(every/5, PullJitter).Truncate(time.Second),
		Status:     min(every, StatusInterval),
		Boot:       every,
		Accuracy:   testAccuracy,
		CRLMargin:  crl / 2,
		LeafWindow: leaf / 6,
		CRLWindow:  crl / 8,
		CAWindow:   min(ca/4, CAWindow),
	}
}

// systemdSpan writes d as a systemd time span: whole minutes as "Nmin",
// anything else in whole seconds.
func systemdSpan(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dmin", int(d/time.Minute))
	}
	return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
}

// timerAccuracy is the timers' AccuracySec as a systemd time span, empty
// where systemd's default does (see Timing's Accuracy).
func timerAccuracy(site *Site) string {
	if a := site.Timing().Accuracy; a > 0 {
		return systemdSpan(a)
	}
	return ""
}

// TestTimescaleWarning is what validate and status print for a site with
// ca.test_timescale.
func TestTimescaleWarning(s *Site) string {
	t := s.Timing()
	return fmt.Sprintf("warning: %s is set: validities of minutes and timers every %s, for tests only; never set it on a real site",
		testTimescaleField, t.CRLCheck)
}

package authority

import (
	"fmt"
	"slices"
	"time"

	"ztwizard/steps/pki"
)

// Warning horizons: a certificate or CA within WarnWithin of its end, or
// the CRL within WarnCRLWithin of its nextUpdate, is flagged.
const (
	WarnWithin    = 30 * 24 * time.Hour
	WarnCRLWithin = 24 * time.Hour
)

// Expiry is one thing that runs out: the CA, a certificate, the CRL.
type Expiry struct {
	Kind     string
	Name     string
	Serial   string
	NotAfter time.Time
	Revoked  bool
	Warn     bool   // within its warning horizon, or already past
	State    string // "ok", "expiring", "expired", "revoked"
}

// Status lists when the CA, every unrevoked certificate still in force (or
// expired within the last WarnWithin) and the CRL run out, soonest first.
// SSH user certificates, which live for hours by design, are listed but
// never flagged.
func (a *Authority) Status() ([]Expiry, error) {
	now := a.now()
	var out []Expiry
	ok, err := a.exists(CACertFile)
	if err != nil || !ok {
		return nil, err
	}
	data, err := a.readFile(CACertFile)
	if err != nil {
		return nil, err
	}
	ca, err := pki.DecodeCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("authority: %s: %w", CACertFile, err)
	}
	out = append(out, expiry(KindCA, ca.Subject.CommonName, hexSerial(ca.SerialNumber), ca.NotAfter, false, now, WarnWithin))
	recs, err := a.List()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Kind == KindCA || now.Sub(r.NotAfter) > WarnWithin {
			continue
		}
		if r.RevokedAt != nil || r.SupersededAt != nil {
			continue
		}
		horizon := WarnWithin
		if r.Kind == KindSSHUser {
			horizon = 0
		}
		out = append(out, expiry(r.Kind, r.Name, r.Serial, r.NotAfter, false, now, horizon))
	}
	next, err := a.CRLNextUpdate()
	if err != nil {
		return nil, err
	}
	if !next.IsZero() {
		out = append(out, expiry(KindCRL, "revocation list", "", next, false, now, WarnCRLWithin))
	}
	slices.SortStableFunc(out, func(x, y Expiry) int { return x.NotAfter.Compare(y.NotAfter) })
	return out, nil
}

func expiry(kind, name, serial string, notAfter time.Time, revoked bool, now time.Time, horizon time.Duration) Expiry {
	e := Expiry{Kind: kind, Name: name, Serial: serial, NotAfter: notAfter, Revoked: revoked, State: "ok"}
	switch {
	case revoked:
		e.State = "revoked"
	case !now.Before(notAfter):
		e.State, e.Warn = "expired", kind != KindSSHUser
	case notAfter.Sub(now) <= horizon:
		e.State, e.Warn = "expiring", true
	}
	return e
}

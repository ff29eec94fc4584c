//go:build linux

package steps

import (
	"math/big"
	"testing"
	"time"

	"ztwizard/steps/pki"
)

// TestNginxSessionZoneFollowsCAs: the session cache's name changes when
// the CAs change even with the same revocations (a CA rotation's init
// adds one, its finish drops the old), so a client of the dropped CA
// cannot resume a session it made before.
func TestNginxSessionZoneFollowsCAs(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	oldCA, newCA := mtlsRoot(t, now), mtlsRoot(t, now)
	crl := func(ca *pki.CA) []byte {
		der, err := ca.CRL(nil, big.NewInt(1), now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return pki.EncodeCRLPEM(der)
	}
	before := nginxSessionZone(crl(oldCA))
	overlap := nginxSessionZone(append(crl(oldCA), crl(newCA)...))
	after := nginxSessionZone(crl(newCA))
	if before == overlap || overlap == after || before == after {
		t.Errorf("zones before, during and after a rotation: %s %s %s; want three names", before, overlap, after)
	}
	if again := nginxSessionZone(crl(oldCA)); again != before {
		t.Errorf("the same CA and revocations gave another zone: %s %s", before, again)
	}
}

package authority

import (
	"maps"
	"slices"
	"testing"

	"ztwizard/steps"
)

// TestSignUserForwarding: a user's certificate carries the forwarding
// extensions only when the site grants that user forwarding.
func TestSignUserForwarding(t *testing.T) {
	a, _ := newAuthority(t, "")
	a.Site.SSH.Users = append(a.Site.SSH.Users, steps.SSHUser{Name: "ops", Principals: []string{"root"}, Forwarding: []string{"port", "agent"}})
	for user, want := range map[string][]string{
		"alice": {"permit-pty"},
		"ops":   {"permit-agent-forwarding", "permit-port-forwarding", "permit-pty"},
	} {
		signed, err := a.SignUser(user, testSSHKey(t), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(signed.Cert.Extensions)); !slices.Equal(got, want) {
			t.Errorf("%s: extensions %q, want %q", user, got, want)
		}
	}
}

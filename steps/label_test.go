package steps

import (
	"regexp"
	"strings"
	"testing"

	"ztwizard/steps/testenv"
)

// TestIsLabel holds isLabel to the regular expressions it replaced, on
// edge cases and on every string of up to three characters from an
// alphabet with each class of character in it.
func TestIsLabel(t *testing.T) {
	lower := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	mixed := regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	cases := []string{"", "a", "-", "a-", "-a", "a-b", "web-01", "Web", "a.b", "a_b", "é", "a\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "a" + strings.Repeat("-", 61) + "a", "a" + strings.Repeat("-", 62) + "a"}
	cases = append(cases, testenv.AllStrings("aZ9-._", 3)...)
	for _, s := range cases {
		if got, want := isLabel(s, false), lower.MatchString(s); got != want {
			t.Errorf("isLabel(%q, false) = %v, want %v", s, got, want)
		}
		if got, want := isLabel(s, true), mixed.MatchString(s); got != want {
			t.Errorf("isLabel(%q, true) = %v, want %v", s, got, want)
		}
	}
}

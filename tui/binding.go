package tui

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"ztwizard/steps"
)

// binding connects a text field to a value: get formats it, set parses the
// text and stores it. A set that fails keeps the old value and its error is
// the field's own problem.
type binding struct {
	get func(*steps.Site) string
	set func(*steps.Site, string) error
}

// text binds a string of the site.
func text(p func(*steps.Site) *string) binding {
	return binding{
		get: func(s *steps.Site) string { return *p(s) },
		set: func(s *steps.Site, v string) error { *p(s) = strings.TrimSpace(v); return nil },
	}
}

// duration binds a duration of the site ("4h", "90d").
func duration(p func(*steps.Site) *steps.Duration) binding {
	return binding{
		get: func(s *steps.Site) string { return string(*p(s)) },
		set: func(s *steps.Site, v string) error { *p(s) = steps.Duration(strings.TrimSpace(v)); return nil },
	}
}

// number binds a whole number; empty text is zero, which means the default.
func number(p func(*steps.Site) *int) binding {
	return binding{
		get: func(s *steps.Site) string {
			if *p(s) == 0 {
				return ""
			}
			return strconv.Itoa(*p(s))
		},
		set: func(s *steps.Site, v string) error {
			v = strings.TrimSpace(v)
			if v == "" {
				*p(s) = 0
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			*p(s) = n
			return nil
		},
	}
}

// words binds a list of names written with spaces between them. With
// commas, commas separate too; without, a comma stays in the word, so the
// site's own check can refuse it (SSH principals).
func words(p func(*steps.Site) *[]string, commas bool) binding {
	return binding{
		get: func(s *steps.Site) string { return strings.Join(*p(s), " ") },
		set: func(s *steps.Site, v string) error { *p(s) = splitWords(v, commas); return nil },
	}
}

// networks binds a list of networks in CIDR form, where a bare address
// means that one host: 192.168.10.5 is 192.168.10.5/32, 2001:db8::5 is
// 2001:db8::5/128.
func networks(p func(*steps.Site) *[]string) binding {
	return binding{
		get: func(s *steps.Site) string { return strings.Join(*p(s), " ") },
		set: func(s *steps.Site, v string) error {
			out := splitWords(v, true)
			for i, w := range out {
				if a, err := netip.ParseAddr(w); err == nil && a.Zone() == "" {
					out[i] = netip.PrefixFrom(a, a.BitLen()).String()
				}
			}
			*p(s) = out
			return nil
		},
	}
}

// seconds binds a number of seconds, typed as a number (25) or as a
// duration like every other (25s, 1m); empty is zero, which means none.
func seconds(p func(*steps.Site) *int) binding {
	return binding{
		get: func(s *steps.Site) string {
			if *p(s) == 0 {
				return ""
			}
			return strconv.Itoa(*p(s))
		},
		set: func(s *steps.Site, v string) error {
			v = strings.TrimSpace(v)
			if v == "" {
				*p(s) = 0
				return nil
			}
			if n, err := strconv.Atoi(v); err == nil {
				*p(s) = n
				return nil
			}
			d, err := time.ParseDuration(v)
			if err != nil || d%time.Second != 0 {
				return fmt.Errorf("%q is not a number of seconds (25, or 25s)", v)
			}
			*p(s) = int(d / time.Second)
			return nil
		},
	}
}

// numbers binds a list of whole numbers, such as ports.
func numbers(p func(*steps.Site) *[]int) binding {
	return binding{
		get: func(s *steps.Site) string {
			parts := make([]string, len(*p(s)))
			for i, n := range *p(s) {
				parts[i] = strconv.Itoa(n)
			}
			return strings.Join(parts, " ")
		},
		set: func(s *steps.Site, v string) error {
			var out []int
			for _, w := range splitWords(v, true) {
				n, err := strconv.Atoi(w)
				if err != nil {
					return fmt.Errorf("%q is not a port number", w)
				}
				out = append(out, n)
			}
			*p(s) = out
			return nil
		},
	}
}

// splitWords splits on white space, and on commas when asked.
func splitWords(v string, commas bool) []string {
	if commas {
		v = strings.ReplaceAll(v, ",", " ")
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return nil
	}
	return f
}

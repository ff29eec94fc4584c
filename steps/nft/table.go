package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The table ztwizard owns. Nothing in this package touches another.
const (
	Family    = "inet"
	TableName = "ztwizard"
)

// Table is the inet ztwizard table: its named sets and its chains, in the
// order they are created and listed.
type Table struct {
	Sets   []Set
	Chains []Chain
}

// Set is a named set. Its key is one type, or several for a concatenation
// (ipv4_addr . inet_service). An interval set holds networks of one address
// type, or port values.
type Set struct {
	Name     string
	Key      []Type
	Interval bool
	Elements []Element
}

// Element is one member of a set: one value per field of the set's key.
type Element []Value

// Chain is a base chain of type filter.
type Chain struct {
	Name     string
	Hook     Hook
	Priority int // 0 is the filter priority
	Policy   Verdict
	Rules    []Rule
}

// Rule accepts or drops packets that pass all its matches and, when set,
// its rate limit.
type Rule struct {
	Match   []Match
	Limit   *Limit
	Verdict Verdict
}

// Match tests one packet field, or a concatenation of fields, against a
// value, a named set, or an inline (anonymous) set. Exactly one of Value,
// Set and AnonSet is given; a concatenation is only tested against a set.
type Match struct {
	Fields  []Field
	Value   Value   // equal to it; a Net matches any address inside, State any of its states
	Set     string  // a member of this named set
	AnonSet []Value // a member of this inline set
}

// Is matches field f against one value.
func Is(f Field, v Value) Match { return Match{Fields: []Field{f}, Value: v} }

// In matches field f against an inline set of values.
func In(f Field, vs ...Value) Match { return Match{Fields: []Field{f}, AnonSet: vs} }

// InSet matches a field, or the concatenation of fields, against the named set.
func InSet(set string, fs ...Field) Match { return Match{Fields: fs, Set: set} }

// Limit is a packet rate limit with nft's default burst (5 packets).
type Limit struct {
	Rate uint64
	Per  Unit
	Over bool // match the packets above the rate instead of those within it
}

// Unit is the time unit of a rate limit.
type Unit uint64

// Rate limit units, in seconds.
const (
	Second Unit = 1
	Minute Unit = 60
	Hour   Unit = 3600
	Day    Unit = 86400
)

var unitNames = map[Unit]string{Second: "second", Minute: "minute", Hour: "hour", Day: "day"}

// ParseRate reads a rate such as "10/second" (second, minute, hour or day).
func ParseRate(s string) (Limit, error) {
	n, unit, ok := strings.Cut(s, "/")
	rate, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil || rate == 0 {
		return Limit{}, fmt.Errorf("%q is not a rate (e.g. 10/second)", s)
	}
	for u, name := range unitNames {
		if name == unit {
			return Limit{Rate: rate, Per: u}, nil
		}
	}
	return Limit{}, fmt.Errorf("%q has an unknown unit (second, minute, hour or day)", s)
}

// String is the limit as nft prints it.
func (l Limit) String() string {
	over := ""
	if l.Over {
		over = "over "
	}
	return fmt.Sprintf("limit rate %s%d/%s", over, l.Rate, unitNames[l.Per])
}

// Verdict is what a rule or a chain policy does with a packet.
type Verdict int

// Verdicts.
const (
	Accept Verdict = iota + 1
	Drop
)

// String is the verdict as nft prints it.
func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Hook is where a base chain sees packets.
type Hook int

// Hooks of the inet family that a filter chain uses.
const (
	Input Hook = iota + 1
	Forward
	Output
)

// String is the hook as nft prints it.
func (h Hook) String() string {
	switch h {
	case Input:
		return "input"
	case Forward:
		return "forward"
	case Output:
		return "output"
	}
	return fmt.Sprintf("hook(%d)", int(h))
}

// RuleCount is the number of rules in all chains.
func (t *Table) RuleCount() int {
	n := 0
	for _, c := range t.Chains {
		n += len(c.Rules)
	}
	return n
}

// Set returns the named set.
func (t *Table) Set(name string) (*Set, bool) {
	for i := range t.Sets {
		if t.Sets[i].Name == name {
			return &t.Sets[i], true
		}
	}
	return nil, false
}

// Chain returns the named chain.
func (t *Table) Chain(name string) (*Chain, bool) {
	for i := range t.Chains {
		if t.Chains[i].Name == name {
			return &t.Chains[i], true
		}
	}
	return nil, false
}

var identRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,63}$`) })

// Validate reports the first inconsistency that nft or the kernel would
// reject: a bad name, a value of the wrong type, an unknown set, overlapping
// intervals, a duplicate element.
func (t *Table) Validate() error {
	if err := t.validate(); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	return nil
}

func (t *Table) validate() error {
	sets := map[string]*Set{}
	for i := range t.Sets {
		s := &t.Sets[i]
		if err := s.validate(); err != nil {
			return fmt.Errorf("set %q: %w", s.Name, err)
		}
		if sets[s.Name] != nil {
			return fmt.Errorf("set %q is defined twice", s.Name)
		}
		sets[s.Name] = s
	}
	chains := map[string]bool{}
	for _, c := range t.Chains {
		switch {
		case !identRE().MatchString(c.Name):
			return fmt.Errorf("chain %q: bad name", c.Name)
		case chains[c.Name]:
			return fmt.Errorf("chain %q is defined twice", c.Name)
		case c.Hook < Input || c.Hook > Output:
			return fmt.Errorf("chain %q: unknown hook %d", c.Name, int(c.Hook))
		case c.Policy != Accept && c.Policy != Drop:
			return fmt.Errorf("chain %q: policy must be accept or drop", c.Name)
		}
		chains[c.Name] = true
		for i, r := range c.Rules {
			if err := r.validate(sets); err != nil {
				return fmt.Errorf("chain %q rule %d: %w", c.Name, i, err)
			}
		}
	}
	return nil
}

func (s *Set) validate() error {
	if !identRE().MatchString(s.Name) {
		return errors.New("bad name")
	}
	if len(s.Key) == 0 || len(s.Key) > 5 {
		return errors.New("a key needs 1 to 5 types")
	}
	for _, k := range s.Key {
		switch {
		case k.info().name == "":
			return fmt.Errorf("unknown key type %d", int(k))
		case k == TypeIfName || k == TypeCtState:
			return fmt.Errorf("sets of %s are not supported", k)
		}
	}
	if s.Interval && (len(s.Key) != 1 || !s.Key[0].ranged()) {
		return fmt.Errorf("interval sets of %s are not supported", s.keyName())
	}
	seen := map[string]bool{}
	for _, e := range s.Elements {
		if len(e) != len(s.Key) {
			return fmt.Errorf("element %s has %d fields, want %d", e, len(e), len(s.Key))
		}
		for i, v := range e {
			if err := checkValue(v, s.Key[i], s.Interval); err != nil {
				return fmt.Errorf("element %s: %w", e, err)
			}
		}
		k := string(e.key())
		if seen[k] {
			return fmt.Errorf("element %s is listed twice", e)
		}
		seen[k] = true
	}
	if s.Interval {
		rs := s.ranges()
		for i := 1; i < len(rs); i++ {
			if cmpBytes(rs[i].lo, rs[i-1].hi) <= 0 {
				return fmt.Errorf("intervals %s and %s overlap", rs[i-1].v, rs[i].v)
			}
		}
	}
	return nil
}

func (r Rule) validate(sets map[string]*Set) error {
	if r.Verdict != Accept && r.Verdict != Drop {
		return errors.New("verdict must be accept or drop")
	}
	if r.Limit != nil && (r.Limit.Rate == 0 || unitNames[r.Limit.Per] == "") {
		return fmt.Errorf("bad limit %d per %d seconds", r.Limit.Rate, r.Limit.Per)
	}
	for _, m := range r.Match {
		if err := m.validate(sets); err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
	}
	return nil
}

func (m Match) validate(sets map[string]*Set) error {
	if len(m.Fields) == 0 {
		return errors.New("no field")
	}
	for _, f := range m.Fields {
		if f.info().name == "" {
			return fmt.Errorf("unknown field %d", int(f))
		}
	}
	given := 0
	for _, b := range []bool{m.Value != nil, m.Set != "", len(m.AnonSet) > 0} {
		if b {
			given++
		}
	}
	if given != 1 {
		return errors.New("give exactly one of a value, a set or an inline set")
	}
	if len(m.Fields) > 1 && m.Set == "" {
		return errors.New("a concatenation is only matched against a named set")
	}
	typ := m.Fields[0].info().typ
	switch {
	case m.Value != nil:
		return checkValue(m.Value, typ, true)
	case m.Set != "":
		s, ok := sets[m.Set]
		if !ok {
			return fmt.Errorf("unknown set @%s", m.Set)
		}
		var want []Type
		for _, f := range m.Fields {
			want = append(want, f.info().typ)
		}
		if !slices.Equal(want, s.Key) {
			return fmt.Errorf("set @%s holds %s", m.Set, s.keyName())
		}
	default:
		if typ == TypeIfName || typ == TypeCtState {
			return fmt.Errorf("an inline set of %s is not supported", typ.info().name)
		}
		seen := map[string]bool{}
		for _, v := range m.AnonSet {
			if err := checkValue(v, typ, false); err != nil {
				return err
			}
			if seen[string(v.bytes())] {
				return fmt.Errorf("%s is listed twice", v)
			}
			seen[string(v.bytes())] = true
		}
	}
	return nil
}

// checkValue tells whether v is a value of type t; nets are allowed where
// a range is.
func checkValue(v Value, t Type, nets bool) error {
	if v == nil {
		return errors.New("missing value")
	}
	if v.Type() != t {
		return fmt.Errorf("%s is %s, want %s", v, v.Type().info().name, t.info().name)
	}
	switch v := v.(type) {
	case Net:
		p := netip.Prefix(v)
		if !p.IsValid() || p.Masked() != p {
			return fmt.Errorf("%s is not a network (host bits set?)", v)
		}
		if !nets && p.Bits() != p.Addr().BitLen() {
			return fmt.Errorf("%s: a network is only allowed in an interval set", v)
		}
	case Addr:
		if !netip.Addr(v).IsValid() || netip.Addr(v).Zone() != "" {
			return fmt.Errorf("%q is not an address", v.String())
		}
	case Iface:
		if len(v) == 0 || len(v) > 15 || strings.ContainsAny(string(v), "\"*\\\x00") {
			return fmt.Errorf("%q is not an interface name", string(v))
		}
	case State:
		if v == 0 || v&^allStates != 0 {
			return fmt.Errorf("bad conntrack state set %#x", uint32(v))
		}
	}
	return nil
}

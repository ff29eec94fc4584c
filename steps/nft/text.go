package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Text is the table in nft syntax, as `nft list table inet ztwizard` prints
// it: sets first, then chains, set elements in the order nft lists them
// (ascending; concatenations in nft's order on little-endian hosts).
func (t *Table) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", Family, TableName)
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for i := range t.Sets {
		sep()
		t.Sets[i].write(&b)
	}
	for i := range t.Chains {
		sep()
		t.Chains[i].write(&b)
	}
	b.WriteString("}\n")
	return b.String()
}

// Script is an `nft -f` script that atomically replaces the table, and only
// it: it declares the table (so the delete cannot fail), deletes it, and
// defines it afresh, all in one transaction.
func (t *Table) Script() string {
	return fmt.Sprintf("table %[1]s %[2]s\ndelete table %[1]s %[2]s\n%[3]s", Family, TableName, t.Text())
}

func (s *Set) write(b *strings.Builder) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n", s.Name, s.keyName())
	if s.Interval {
		b.WriteString("\t\tflags interval\n")
	}
	if len(s.Elements) > 0 {
		perLine := 1
		if len(s.Key) == 1 {
			perLine = s.Key[0].info().perLine
		}
		b.WriteString("\t\telements = { ")
		for i, e := range s.sorted() {
			if i > 0 {
				if i%perLine == 0 {
					b.WriteString(",\n\t\t\t     ")
				} else {
					b.WriteString(", ")
				}
			}
			b.WriteString(e.String())
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}

func (c *Chain) write(b *strings.Builder) {
	fmt.Fprintf(b, "\tchain %s {\n\t\ttype filter hook %s priority %s; policy %s;\n",
		c.Name, c.Hook, priorityText(c.Priority), c.Policy)
	for _, r := range c.Rules {
		fmt.Fprintf(b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
}

// String is the rule as nft prints it.
func (r Rule) String() string {
	var parts []string
	for _, m := range r.Match {
		parts = append(parts, m.String())
	}
	if r.Limit != nil {
		parts = append(parts, r.Limit.String())
	}
	parts = append(parts, r.Verdict.String())
	return strings.Join(parts, " ")
}

// priorityText names a filter chain's priority as nft does: by the nearest
// standard priority when within 10 of it, else as a number.
func priorityText(p int) string {
	for _, std := range []struct {
		prio int
		name string
	}{{-300, "raw"}, {-150, "mangle"}, {0, "filter"}, {50, "security"}} {
		switch d := p - std.prio; {
		case d == 0:
			return std.name
		case d > 0 && d <= 10:
			return fmt.Sprintf("%s + %d", std.name, d)
		case d < 0 && d >= -10:
			return fmt.Sprintf("%s - %d", std.name, -d)
		}
	}
	return fmt.Sprint(p)
}

// sorted returns the elements in the order nft lists them. nft sorts values
// as numbers; a concatenation as one number read in host byte order, which
// on little-endian hosts compares the bytes from the last one. Each
// element's sort key is made once, not on every comparison.
func (s *Set) sorted() []Element {
	out := make([]Element, 0, len(s.Elements))
	for _, i := range s.order() {
		out = append(out, s.Elements[i])
	}
	return out
}

// order lists the indexes of the set's elements in the order sorted
// returns them.
func (s *Set) order() []int {
	type keyed struct {
		key []byte
		i   int
	}
	ks := make([]keyed, len(s.Elements))
	var buf []byte
	for i, e := range s.Elements {
		start := len(buf)
		for _, v := range e {
			buf = v.appendBytes(buf)
		}
		ks[i] = keyed{buf[start:len(buf):len(buf)], i}
	}
	if len(s.Key) == 1 {
		slices.SortFunc(ks, func(a, b keyed) int { return cmpBytes(a.key, b.key) })
	} else {
		slices.SortFunc(ks, func(a, b keyed) int { return cmpReversed(a.key, b.key) })
	}
	out := make([]int, len(ks))
	for i, k := range ks {
		out[i] = k.i
	}
	return out
}

// sortValues returns the values in ascending order, as nft lists an inline set.
func sortValues(vs []Value) []Value {
	type keyed struct {
		key []byte
		v   Value
	}
	ks := make([]keyed, len(vs))
	var buf []byte
	for i, v := range vs {
		start := len(buf)
		buf = v.appendBytes(buf)
		ks[i] = keyed{buf[start:len(buf):len(buf)], v}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmpBytes(a.key, b.key) })
	out := make([]Value, len(ks))
	for i, k := range ks {
		out[i] = k.v
	}
	return out
}

func cmpBytes(a, b []byte) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return bytes.Compare(a, b)
}

func cmpReversed(a, b []byte) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// span is an interval set element as the first and last address it covers.
type span struct {
	v      Value
	lo, hi []byte
}

// ranges returns an interval set's elements as spans, in ascending order.
func (s *Set) ranges() []span {
	out := make([]span, 0, len(s.Elements))
	for _, e := range s.Elements {
		var p netip.Prefix
		switch v := e[0].(type) {
		case Net:
			p = netip.Prefix(v)
		case Addr:
			p = netip.PrefixFrom(netip.Addr(v), netip.Addr(v).BitLen())
		default:
			continue
		}
		lo := p.Addr().AsSlice()
		hi := slices.Clone(lo)
		for i := p.Bits(); i < len(hi)*8; i++ {
			hi[i/8] |= 0x80 >> (i % 8)
		}
		out = append(out, span{v: e[0], lo: lo, hi: hi})
	}
	slices.SortFunc(out, func(a, b span) int { return cmpBytes(a.lo, b.lo) })
	return out
}

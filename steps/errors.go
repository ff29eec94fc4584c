package steps

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// FieldError is one problem with a site, located by its field path
// ("nodes[1].peers[0]") and, when the site came from a file, its line.
type FieldError struct {
	File string
	Line int
	Path string
	Msg  string
}

// Error formats the problem like a compiler does:
// "site.yaml:14: nodes[1].peers[0]: unknown node "wbe" (did you mean "web"?)".
func (e FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
		if e.Line > 0 {
			fmt.Fprintf(&b, "%d:", e.Line)
		}
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a site, in file order.
type Errors []FieldError

// Error joins the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// For returns the problems at path or below it ("nodes[1]" matches
// "nodes[1].peers[0]"), for showing an error beside its field.
func (es Errors) For(path string) Errors {
	var out Errors
	for _, e := range es {
		if e.Path == path || strings.HasPrefix(e.Path, path+".") || strings.HasPrefix(e.Path, path+"[") {
			out = append(out, e)
		}
	}
	return out
}

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return false
	})
	return es
}

// MaxValueLen bounds the text of one field of a site, in bytes: more than
// any real name, address or URL needs (a DNS name is at most 253), and
// short enough to quote in a message.
const MaxValueLen = 260

// errs collects problems while walking a site. A value longer than
// MaxValueLen is reported once, at its own path and without being quoted;
// no other message about it or quoting it is kept.
type errs struct {
	list Errors
	long map[string]bool // paths of values too long to quote
}

func (c *errs) add(path, format string, args ...any) {
	if c.long[path] {
		return
	}
	for _, a := range args {
		if s, ok := a.(string); ok && len(s) > MaxValueLen {
			return
		}
		if d, ok := a.(Duration); ok && len(d) > MaxValueLen {
			return
		}
	}
	c.list = append(c.list, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// checkLengths finds every text field longer than MaxValueLen, walking
// the site by its YAML field names.
func (c *errs) checkLengths(v reflect.Value, path string) {
	if path == "" && !anyTooLong(v) {
		return // no field paths to build
	}
	c.lengthsAt(v, path)
}

// anyTooLong tells whether v holds a text longer than MaxValueLen.
func anyTooLong(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return v.Len() > MaxValueLen
	case reflect.Struct:
		for i := range v.NumField() {
			if anyTooLong(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if anyTooLong(v.Index(i)) {
				return true
			}
		}
	case reflect.Pointer:
		return !v.IsNil() && anyTooLong(v.Elem())
	}
	return false
}

func (c *errs) lengthsAt(v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.String:
		if n := v.Len(); n > MaxValueLen {
			c.list = append(c.list, FieldError{Path: path, Msg: fmt.Sprintf("%d bytes is too long (at most %d)", n, MaxValueLen)})
			if c.long == nil {
				c.long = map[string]bool{}
			}
			c.long[path] = true
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			c.lengthsAt(v.Field(i), join(path, name))
		}
	case reflect.Slice:
		for i := range v.Len() {
			c.lengthsAt(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Pointer:
		if !v.IsNil() {
			c.lengthsAt(v.Elem(), path)
		}
	}
}

func (c *errs) err() error {
	if len(c.list) == 0 {
		return nil
	}
	return c.list
}

// Suggest returns ` (did you mean "x"?)` for the candidate closest to s,
// or "" when none is close.
// Strings longer than 64 bytes are no names and get no suggestion, so a
// hostile value costs no quadratic work.
func Suggest(s string, candidates []string) string {
	const longest = 64
	if len(s) > longest {
		return ""
	}
	best, bestD := "", 3
	for _, c := range candidates {
		limit := 2
		if len(c) < 6 {
			limit = 1
		}
		if len(c) > longest || abs(utf8.RuneCountInString(c)-utf8.RuneCountInString(s)) > limit {
			continue
		}
		if d := editDistance(s, c); d <= limit && d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and swaps of two neighbours each cost one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

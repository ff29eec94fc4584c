package tui

import (
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// multiField ticks any number of names out of the site's: a node's peers,
// a service's allowed clients, a database's client nodes.
type multiField struct {
	fieldBase
	ptr     func(*steps.Site) *[]string
	options func(e *env) []string
	empty   string // what to say when there is nothing to tick
	cur     int
	// implied are names ticked from elsewhere (a link set on the other
	// node); unimply unticks one there.
	implied func(e *env) []string
	unimply func(e *env, name string)
}

// withImplied shows the names implied ticks as ticked, and unticks them
// with unimply.
func (f *multiField) withImplied(implied func(e *env) []string, unimply func(e *env, name string)) *multiField {
	f.implied, f.unimply = implied, unimply
	return f
}

// ticked are the names ticked: the field's own, then the implied ones.
func (f *multiField) ticked(e *env) []string {
	out := slices.Clone(*f.ptr(e.site))
	if f.implied != nil {
		for _, n := range f.implied(e) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// isImplied tells whether name is ticked from elsewhere.
func (f *multiField) isImplied(e *env, name string) bool {
	return f.implied != nil && slices.Contains(f.implied(e), name)
}

// newMulti makes a multi-select bound to a list of names of the site.
func newMulti(label, desc, path string, p func(*steps.Site) *[]string, opts func(e *env) []string, empty string) *multiField {
	return &multiField{fieldBase: fieldBase{label: label, desc: desc, path: path}, ptr: p, options: opts, empty: empty}
}

// choices are the options, then any ticked name that is no option (so it
// can be seen and unticked).
func (f *multiField) choices(e *env) []string {
	out := slices.Clone(f.options(e))
	for _, v := range *f.ptr(e.site) {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (f *multiField) focus(dir int) tea.Cmd {
	if dir < 0 {
		f.cur = 1 << 20
	} else {
		f.cur = 0
	}
	return nil
}
func (f *multiField) blur()       { f.touched = true }
func (f *multiField) reload(*env) { f.cur = 0 }

func (f *multiField) update(e *env, msg tea.KeyPressMsg) outcome {
	opts := f.choices(e)
	if len(opts) == 0 {
		return outcome{}
	}
	f.cur = min(max(f.cur, 0), len(opts)-1)
	switch msg.String() {
	case "right", "l":
		f.cur = min(f.cur+1, len(opts)-1)
		return outcome{handled: true}
	case "left", "h":
		f.cur = max(f.cur-1, 0)
		return outcome{handled: true}
	case "space", "x":
		list := f.ptr(e.site)
		name := opts[f.cur]
		switch i := slices.Index(*list, name); {
		case i >= 0:
			*list = slices.Delete(slices.Clone(*list), i, i+1)
			if f.isImplied(e, name) {
				f.unimply(e, name)
			}
		case f.isImplied(e, name):
			f.unimply(e, name)
		default:
			*list = append(slices.Clone(*list), name)
		}
		if len(*list) == 0 {
			*list = nil
		}
		f.touched = true
		return outcome{handled: true, changed: true}
	}
	return outcome{}
}

func (f *multiField) view(e *env, focused bool, width int) string {
	opts := f.choices(e)
	if len(opts) == 0 {
		return e.th.desc.Render(truncate(f.empty, width))
	}
	known := f.options(e)
	ticked := f.ticked(e)
	if !focused {
		if len(ticked) == 0 {
			return e.th.input.Blurred.Placeholder.Render(truncate("none", width))
		}
		return e.th.value.Render(truncate(strings.Join(ticked, ", "), width))
	}
	f.cur = min(max(f.cur, 0), len(opts)-1)
	var items []string
	for i, o := range opts {
		box := "[ ] "
		if slices.Contains(ticked, o) {
			box = "[x] "
		}
		st := e.th.value
		switch {
		case !slices.Contains(known, o):
			st = e.th.errText
			o += "?"
		case i == f.cur:
			st = e.th.labelFocus.Underline(true)
		}
		items = append(items, st.Render(box+o))
	}
	return wrapItems(items, width)
}

func (f *multiField) filled(e *env) bool { return len(f.ticked(e)) > 0 }
func (f *multiField) local() error       { return nil }
func (f *multiField) keys() []key.Binding {
	return []key.Binding{keys.MoveOption, keys.Toggle}
}
func (f *multiField) ask(a *asker) error { return a.names(f) }

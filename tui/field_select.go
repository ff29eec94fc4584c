package tui

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// option is one choice of a select field.
type option struct{ value, label string }

// selectField picks one value out of a few: a key type, an engine, a node.
type selectField struct {
	fieldBase
	ptr     func(*steps.Site) *string
	options func(e *env) []option
	onSet   func(e *env) // runs after the value changed
}

// newSelect makes a select field bound to a string of the site.
func newSelect(label, desc, path string, p func(*steps.Site) *string, opts func(e *env) []option) *selectField {
	return &selectField{fieldBase: fieldBase{label: label, desc: desc, path: path}, ptr: p, options: opts}
}

// fixed is a constant list of options whose labels are their values.
func fixed(values ...string) func(*env) []option {
	opts := make([]option, len(values))
	for i, v := range values {
		opts[i] = option{v, v}
	}
	return func(*env) []option { return opts }
}

func (f *selectField) focus(int) tea.Cmd { return nil }
func (f *selectField) blur()             { f.touched = true }
func (f *selectField) reload(*env)       {}

func (f *selectField) index(e *env) (int, []option) {
	opts := f.options(e)
	cur := *f.ptr(e.site)
	for i, o := range opts {
		if o.value == cur {
			return i, opts
		}
	}
	return -1, opts
}

func (f *selectField) update(e *env, msg tea.KeyPressMsg) outcome {
	i, opts := f.index(e)
	if len(opts) == 0 {
		return outcome{}
	}
	switch msg.String() {
	case "right", "l", "space":
		i = (i + 1) % len(opts)
	case "left", "h":
		if i <= 0 {
			i = len(opts)
		}
		i--
	default:
		return outcome{}
	}
	*f.ptr(e.site) = opts[i].value
	f.touched = true
	if f.onSet != nil {
		f.onSet(e)
	}
	return outcome{handled: true, changed: true}
}

func (f *selectField) view(e *env, focused bool, width int) string {
	i, opts := f.index(e)
	var label string
	switch {
	case i >= 0:
		label = opts[i].label
	case *f.ptr(e.site) != "":
		label = *f.ptr(e.site) + "?"
	case len(opts) == 0:
		return e.th.desc.Render(truncate("nothing to choose yet", width))
	default:
		label = "choose one"
	}
	if !focused {
		return e.th.value.Render(truncate(label, width))
	}
	pos := ""
	if len(opts) > 1 {
		pos = e.th.status.Render(" " + itoa(i+1) + "/" + itoa(len(opts)))
	}
	return e.th.marker.Render("‹ ") + e.th.labelFocus.Render(truncate(label, width-8)) + e.th.marker.Render(" ›") + pos
}

func (f *selectField) filled(e *env) bool  { return *f.ptr(e.site) != "" }
func (f *selectField) local() error        { return nil }
func (f *selectField) keys() []key.Binding { return []key.Binding{keys.Choose} }
func (f *selectField) ask(a *asker) error  { return a.choose(f) }

package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// form is a column of fields with one in focus. Tab, the arrows and enter
// move between the fields; every other key goes to the focused field.
type form struct {
	fields []field
	cur    int
	// attempted is set when the admin tried to leave with problems: then
	// every problem shows, touched or not.
	attempted bool
	top       int // the first line drawn, when the form is taller than its room
}

func newForm(fields ...field) *form { return &form{fields: fields} }

func (f *form) focused() field { return f.fields[f.cur] }

// setFocus moves the focus to field i; dir says from where it came.
func (f *form) setFocus(i, dir int) tea.Cmd {
	i = min(max(i, 0), len(f.fields)-1)
	if i != f.cur {
		f.fields[f.cur].blur()
	}
	f.cur = i
	return f.fields[i].focus(dir)
}

// reload reads every field's value from the site again.
func (f *form) reload(e *env) {
	for _, fl := range f.fields {
		fl.reload(e)
	}
}

// capture returns the list whose item editor is open, if any: it takes
// every key and the whole page.
func (f *form) capture() *listField {
	if l, ok := f.focused().(*listField); ok && l.editing >= 0 {
		return l
	}
	return nil
}

func (f *form) update(e *env, msg tea.KeyPressMsg) outcome {
	o := f.focused().update(e, msg)
	if o.handled {
		return o
	}
	switch {
	case key.Matches(msg, keys.Next), key.Matches(msg, keys.Enter):
		if f.cur < len(f.fields)-1 {
			o.cmd = f.setFocus(f.cur+1, 1)
			o.handled = true
		}
	case key.Matches(msg, keys.Prev):
		if f.cur > 0 {
			o.cmd = f.setFocus(f.cur-1, -1)
			o.handled = true
		}
	}
	return o
}

// blocking lists the problems of the form's own fields that keep it from
// being left, touched or not.
func (f *form) blocking(e *env) []string {
	var out []string
	for _, fl := range f.fields {
		b, _ := problems(e, fl)
		out = append(out, b...)
	}
	return out
}

// focusFirstProblem shows every problem and puts the focus on the first
// field that has one.
func (f *form) focusFirstProblem(e *env) tea.Cmd {
	f.attempted = true
	for i, fl := range f.fields {
		if b, _ := problems(e, fl); len(b) > 0 {
			cmd := f.setFocus(i, 1)
			if l, ok := fl.(*listField); ok {
				l.selectFirstProblem(e)
			}
			return cmd
		}
	}
	return nil
}

// labelWidth is the width of the label column.
func (f *form) labelWidth(width int) int {
	w := 0
	for _, fl := range f.fields {
		if b := fl.info(); !b.block && b.label != "" {
			w = max(w, lipgloss.Width(b.label))
		}
	}
	return min(w, max(width/3, 8))
}

// view draws the form in width x height cells at most, scrolled so the
// focused field shows.
func (f *form) view(e *env, width, height int) string {
	lw := f.labelWidth(width)
	var lines []string
	focusTop, focusBottom := 0, 0
	for i, fl := range f.fields {
		start := len(lines)
		lines = append(lines, f.fieldLines(e, fl, i == f.cur, width, lw)...)
		if i == f.cur {
			focusTop, focusBottom = start, len(lines)
			if c, ok := fl.(interface{ cursorLine() int }); ok {
				focusTop = start + c.cursorLine()
				focusBottom = min(focusTop+3, len(lines))
			}
		}
	}
	if height <= 0 || len(lines) <= height {
		f.top = 0
		return strings.Join(lines, "\n")
	}
	if focusTop < f.top+1 {
		f.top = max(focusTop-1, 0)
	}
	if focusBottom > f.top+height-1 {
		f.top = focusBottom - height + 1
	}
	f.top = min(max(f.top, 0), len(lines)-height)
	shown := slicesClone(lines[f.top : f.top+height])
	if f.top > 0 {
		shown[0] = e.th.status.Render(pad("  ↑ more above", width))
	}
	if f.top+height < len(lines) {
		shown[height-1] = e.th.status.Render(pad("  ↓ more below", width))
	}
	return strings.Join(shown, "\n")
}

// fieldLines draws one field: marker, label and value, then the focused
// field's description and the field's problems.
func (f *form) fieldLines(e *env, fl field, focused bool, width, lw int) []string {
	b := fl.info()
	marker := "  "
	if focused {
		marker = e.th.marker.Render("▸ ")
	}
	lab := e.th.label
	if focused {
		lab = e.th.labelFocus
	}
	var lines []string
	switch {
	case b.block:
		lines = append(lines, marker+lab.Render(truncate(b.label, width-2)))
		for _, l := range strings.Split(fl.view(e, focused, width-2), "\n") {
			lines = append(lines, "  "+l)
		}
	case b.label == "":
		lines = append(lines, marker+fl.view(e, focused, width-2))
	default:
		vw := max(width-2-lw-1, 4)
		val := strings.Split(fl.view(e, focused, vw), "\n")
		lines = append(lines, marker+lab.Render(pad(b.label, lw))+" "+val[0])
		for _, l := range val[1:] {
			lines = append(lines, strings.Repeat(" ", 2+lw+1)+l)
		}
	}
	if focused && b.desc != "" {
		for _, l := range wrap(b.desc, width-4) {
			lines = append(lines, "    "+e.th.desc.Render(l))
		}
	}
	var blocking, notes []string
	if s, ok := fl.(interface {
		shown(e *env) (blocking, notes []string)
	}); ok {
		blocking, notes = s.shown(e)
	} else if b.touched || f.attempted || fl.filled(e) {
		blocking, notes = problems(e, fl)
	}
	for _, p := range blocking {
		for i, l := range wrap(p, width-6) {
			lead := "    ✗ "
			if i > 0 {
				lead = "      "
			}
			lines = append(lines, e.th.errText.Render(lead+l))
		}
	}
	for _, p := range notes {
		for i, l := range wrap(p, width-6) {
			lead := "    ! "
			if i > 0 {
				lead = "      "
			}
			lines = append(lines, e.th.noteText.Render(lead+l))
		}
	}
	return lines
}

// keys are the focused field's keys, for the help line.
func (f *form) keys() []key.Binding {
	return append([]key.Binding{}, f.focused().keys()...)
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

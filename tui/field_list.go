package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// listField is a list of items of the site (nodes, services, clients,
// users, databases) edited in place: the arrows pick a row, enter opens
// the row's editor, a adds, x removes.
type listField struct {
	fieldBase
	kind     itemKind
	row      int // the selected row; count() is the "add" row
	editing  int // the item being edited, -1 when none
	editor   *form
	before   any  // the item as it was when its editor opened
	isNew    bool // the item was added by this editor
	removing bool // asking whether to remove the selected row
	warned   bool // esc was pressed once with problems
	message  string
}

// newList makes a list field of kind's items.
func newList(label, desc string, kind itemKind) *listField {
	return &listField{fieldBase: fieldBase{label: label, desc: desc, path: kind.path(), block: true}, kind: kind, editing: -1}
}

func (f *listField) focus(dir int) tea.Cmd {
	if dir < 0 {
		f.row = 1 << 20
	} else {
		f.row = 0
	}
	return nil
}

func (f *listField) blur() {
	f.touched = true
	f.removing = false
	f.message = ""
}

func (f *listField) reload(*env) {
	f.editing, f.editor, f.removing = -1, nil, false
}

// itemPath is the site path of item i.
func (f *listField) itemPath(i int) string { return fmt.Sprintf("%s[%d]", f.kind.path(), i) }

// open starts editing item i.
func (f *listField) open(e *env, i int, isNew bool) tea.Cmd {
	f.editing, f.isNew, f.warned, f.removing, f.message = i, isNew, false, false, ""
	f.before = f.kind.snapshot(e.site, i)
	f.editor = newForm(append(f.kind.fields(i), newButton("done", label("Done")))...)
	f.editor.reload(e)
	return f.editor.setFocus(0, 1)
}

// close ends editing, keeping the item.
func (f *listField) close(e *env) {
	f.kind.renamed(e.site, f.editing, f.before)
	f.row = f.editing
	f.editing, f.editor, f.before = -1, nil, nil
}

// itemProblems are the problems that keep the open item from being kept.
func (f *listField) itemProblems(e *env) []string {
	out := f.editor.blocking(e)
	for _, fe := range ownedBy(e.errs, e.step) {
		if under(fe.Path, f.itemPath(f.editing)) {
			out = append(out, plainPaths(e.site, fe.Msg))
		}
	}
	return out
}

func (f *listField) update(e *env, msg tea.KeyPressMsg) outcome {
	if f.editing >= 0 {
		return f.updateEditor(e, msg)
	}
	n := f.kind.count(e.site)
	f.row = min(max(f.row, 0), n)
	if f.removing {
		f.removing = false
		if key.Matches(msg, keys.Yes) && f.row < n {
			name := f.kind.name(e.site, f.row)
			f.kind.remove(e.site, f.row)
			f.message = fmt.Sprintf("Removed %s %s.", f.kind.noun(), name)
			return outcome{handled: true, changed: true}
		}
		return outcome{handled: true}
	}
	f.message = ""
	switch {
	case msg.String() == "up":
		if f.row > 0 {
			f.row--
			return outcome{handled: true}
		}
	case msg.String() == "down":
		if f.row < n {
			f.row++
			return outcome{handled: true}
		}
	case key.Matches(msg, keys.Edit):
		if f.row < n {
			return outcome{handled: true, cmd: f.open(e, f.row, false)}
		}
		return f.addItem(e)
	case key.Matches(msg, keys.Add):
		return f.addItem(e)
	case key.Matches(msg, keys.Remove):
		if f.row < n {
			f.removing = true
			return outcome{handled: true}
		}
	}
	return outcome{}
}

func (f *listField) addItem(e *env) outcome {
	i := f.kind.add(e)
	f.row = i
	f.touched = true
	return outcome{handled: true, changed: true, cmd: f.open(e, i, true)}
}

func (f *listField) updateEditor(e *env, msg tea.KeyPressMsg) outcome {
	switch msg.String() {
	case "esc":
		return f.leave(e, true)
	case "ctrl+n", "ctrl+s":
		return f.leave(e, false)
	}
	o := f.editor.update(e, msg)
	if o.changed {
		f.warned = false
	}
	if o.action == "done" {
		return f.leave(e, false)
	}
	o.handled = true
	return o
}

// leave closes the editor if the item has no problems. Otherwise done
// shows them; esc warns once and then undoes the changes.
func (f *listField) leave(e *env, esc bool) outcome {
	noun := f.kind.noun()
	if len(f.itemProblems(e)) == 0 {
		f.close(e)
		return outcome{handled: true, changed: true}
	}
	if esc && (f.warned || (f.isNew && !f.editorTouched())) {
		i := f.editing
		if f.isNew {
			f.kind.remove(e.site, i)
			f.row = i
			f.message = ""
		} else {
			f.kind.restore(e.site, i, f.before)
			f.row = i
			f.message = fmt.Sprintf("Changes to %s %s undone.", noun, f.kind.name(e.site, i))
		}
		f.editing, f.editor, f.before = -1, nil, nil
		return outcome{handled: true, changed: true}
	}
	cmd := f.editor.focusFirstProblem(e)
	if esc {
		f.warned = true
		f.message = fmt.Sprintf("This %s has problems: fix them, or press esc again to undo your changes.", noun)
	} else {
		f.message = fmt.Sprintf("Fix the marked fields to keep this %s (esc twice undoes your changes).", noun)
	}
	return outcome{handled: true, cmd: cmd}
}

func (f *listField) editorTouched() bool {
	for _, fl := range f.editor.fields {
		if fl.info().touched {
			return true
		}
	}
	return false
}

// shown are the problems of the list itself ("no nodes"); the items'
// problems show on their rows.
func (f *listField) shown(e *env) (blocking, notes []string) {
	if !f.touched && f.kind.count(e.site) == 0 {
		return nil, nil
	}
	for _, fe := range e.errs {
		if fe.Path != f.path {
			continue
		}
		if ownerOf(fe) == e.step {
			blocking = append(blocking, plainPaths(e.site, fe.Msg))
		} else {
			notes = append(notes, plainPaths(e.site, fe.Msg))
		}
	}
	return blocking, notes
}

// rowProblems are item i's problems, with those of other steps as notes.
func (f *listField) rowProblems(e *env, i int) (blocking, notes []string) {
	for _, fe := range e.errs {
		if !under(fe.Path, f.itemPath(i)) {
			continue
		}
		if ownerOf(fe) == e.step {
			blocking = append(blocking, plainPaths(e.site, fe.Msg))
		} else {
			notes = append(notes, plainPaths(e.site, fe.Msg))
		}
	}
	return blocking, notes
}

func (f *listField) cursorLine() int { return 1 + f.row }

// selectFirstProblem selects the first row with a problem.
func (f *listField) selectFirstProblem(e *env) {
	for i := range f.kind.count(e.site) {
		if bad, _ := f.rowProblems(e, i); len(bad) > 0 {
			f.row = i
			return
		}
	}
}

func (f *listField) view(e *env, focused bool, width int) string {
	n := f.kind.count(e.site)
	f.row = min(max(f.row, 0), n)
	rows := make([][]string, n)
	widths := []int{}
	for i := range n {
		rows[i] = f.kind.columns(e, i)
		for c, col := range rows[i] {
			if c >= len(widths) {
				widths = append(widths, 0)
			}
			widths[c] = max(widths[c], lipgloss.Width(col))
		}
	}
	var lines []string
	for i, cols := range rows {
		var b strings.Builder
		for c, col := range cols {
			if c == len(cols)-1 {
				b.WriteString(col)
			} else {
				b.WriteString(pad(col, widths[c]) + "  ")
			}
		}
		lead := "  "
		st := e.th.value
		if focused && i == f.row {
			lead = e.th.marker.Render("› ")
			st = e.th.rowOn
		}
		bad, notes := f.rowProblems(e, i)
		mark := "  "
		switch {
		case len(bad) > 0:
			mark = e.th.errText.Render("✗ ")
		case len(notes) > 0:
			mark = e.th.noteText.Render("! ")
		}
		lines = append(lines, lead+mark+st.Render(truncate(b.String(), width-4)))
		if focused && i == f.row {
			if f.removing {
				q := fmt.Sprintf("Remove %s %s?", f.kind.noun(), f.kind.name(e.site, i))
				if uses := f.kind.uses(e.site, i); len(uses) > 0 {
					q += " Then " + strings.Join(uses, "; ") + "."
				}
				for _, l := range wrap(q+" y removes, any other key keeps it.", width-6) {
					lines = append(lines, e.th.noteText.Render("      "+l))
				}
			}
			for _, p := range bad {
				lines = append(lines, e.th.errText.Render("      ✗ "+truncate(p, width-8)))
			}
			for _, p := range notes {
				lines = append(lines, e.th.noteText.Render("      ! "+truncate(p, width-8)))
			}
		}
	}
	add := "+ Add a " + f.kind.noun()
	if focused && f.row == n {
		lines = append(lines, e.th.marker.Render("› ")+"  "+e.th.buttonOn.Render(add))
	} else {
		lines = append(lines, "    "+e.th.button.Render(add))
	}
	if f.message != "" {
		lines = append(lines, e.th.okText.Render("    "+truncate(f.message, width-4)))
	}
	return strings.Join(lines, "\n")
}

// editorView draws the open item's editor for the whole page.
func (f *listField) editorView(e *env, width, height int) string {
	var lines []string
	if f.message != "" {
		for _, l := range wrap(f.message, width) {
			lines = append(lines, e.th.noteText.Render(l))
		}
		lines = append(lines, "")
	}
	body := f.editor.view(e, width, height-len(lines))
	return strings.Join(append(lines, body), "\n")
}

func (f *listField) filled(e *env) bool { return f.kind.count(e.site) > 0 }
func (f *listField) local() error       { return nil }

func (f *listField) keys() []key.Binding {
	if f.editing >= 0 {
		return append(f.editor.keys(), keys.Done, keys.ToList)
	}
	return []key.Binding{keys.Edit, keys.Add, keys.Remove}
}

func (f *listField) ask(a *asker) error { return a.list(f) }

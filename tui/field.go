package tui

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// env is what a field sees while it draws or handles a key: the site being
// edited, its problems, the theme, the step it belongs to and the session.
type env struct {
	site *steps.Site
	errs steps.Errors
	th   *theme
	step stepID
	sess *session
}

// outcome is what a key did to a field.
type outcome struct {
	handled bool    // the field used the key
	changed bool    // the site (or the session) changed
	action  string  // a button was pressed: its action, for the form's owner
	cmd     tea.Cmd // work to run
}

// field is one line (or block) of a form: a value of the site to edit, a
// list of items, or a button. Each kind lives in its own file.
type field interface {
	// info is what every field has: label, description, site path, state.
	info() *fieldBase
	focus(dir int) tea.Cmd // dir: 1 when entered from above, -1 from below
	blur()
	// reload reads the field's value from the site again.
	reload(e *env)
	update(e *env, msg tea.KeyPressMsg) outcome
	// view draws the value part of the field, width cells wide.
	view(e *env, focused bool, width int) string
	// filled tells whether the field holds a value, so its problems show
	// before it is touched.
	filled(e *env) bool
	// local is a problem the site cannot hold, such as text in a port.
	local() error
	keys() []key.Binding
	// ask puts the field to the admin as a plain line prompt.
	ask(a *asker) error
}

// fieldBase is the part every field shares.
type fieldBase struct {
	label   string // short, in the label column
	desc    string // one line, shown under the focused field
	path    string // the site path it edits, for its problems ("" none)
	touched bool   // typed into or left: its problems show
	block   bool   // drawn below its label rather than beside it
	// also shows problems of other paths beside this field.
	also func(steps.FieldError) bool
}

func (b *fieldBase) info() *fieldBase { return b }

// problems returns what is wrong with the field: problems that block its
// step, and notes that belong to another step.
func problems(e *env, f field) (blocking, notes []string) {
	b := f.info()
	if err := f.local(); err != nil {
		blocking = append(blocking, err.Error())
	}
	if b.path == "" && b.also == nil {
		return blocking, nil
	}
	for _, fe := range e.errs {
		if !(b.path != "" && under(fe.Path, b.path)) && !(b.also != nil && b.also(fe)) {
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

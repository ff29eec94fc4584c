package tui

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// buttonField does something when pressed: go on, keep an item, save.
type buttonField struct {
	fieldBase
	text   func(e *env) string
	action string
}

// newButton makes a button that reports action to the form's owner.
func newButton(action string, text func(e *env) string) *buttonField {
	return &buttonField{text: text, action: action}
}

// label is a fixed button text.
func label(s string) func(*env) string { return func(*env) string { return s } }

var pressKey = key.NewBinding(key.WithKeys("enter", "space"), key.WithHelp("enter", "press"))

func (f *buttonField) focus(int) tea.Cmd { return nil }
func (f *buttonField) blur()             {}
func (f *buttonField) reload(*env)       {}

func (f *buttonField) update(_ *env, msg tea.KeyPressMsg) outcome {
	if key.Matches(msg, pressKey) {
		return outcome{handled: true, action: f.action}
	}
	return outcome{}
}

func (f *buttonField) view(e *env, focused bool, width int) string {
	t := "[ " + f.text(e) + " ]"
	if focused {
		return e.th.buttonOn.Render(truncate(t, width))
	}
	return e.th.button.Render(truncate(t, width))
}

func (f *buttonField) filled(*env) bool    { return true }
func (f *buttonField) local() error        { return nil }
func (f *buttonField) keys() []key.Binding { return []key.Binding{pressKey} }
func (f *buttonField) ask(*asker) error    { return nil }

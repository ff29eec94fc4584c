package tui

import (
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// textField is a line of text: a name, an address, a duration, a port, or
// a list of words. It writes to the site as it is typed, so its problems
// show as the admin types.
type textField struct {
	fieldBase
	bind binding
	// hint is shown dimmed when the field is empty: the default, or what an
	// empty field means.
	hint   func(e *env) string
	secret bool
	// confirms marks the field that repeats a secret: the plain prompts
	// ask the secret twice themselves and skip it.
	confirms bool
	in       textinput.Model
	perr     error
}

// newText makes a text field bound to a value of the site.
func newText(label, desc, path string, b binding) *textField {
	in := textinput.New()
	in.Prompt = ""
	st := in.Styles()
	st.Cursor.Blink = false // a steady cursor: nothing redraws while the admin thinks
	in.SetStyles(st)
	return &textField{fieldBase: fieldBase{label: label, desc: desc, path: path}, bind: b, in: in}
}

// withHint sets what an empty field shows.
func (f *textField) withHint(h func(e *env) string) *textField { f.hint = h; return f }

// hidden makes the field a password: it shows dots, never the text.
func (f *textField) hidden() *textField {
	f.secret = true
	f.in.EchoMode = textinput.EchoPassword
	f.in.EchoCharacter = '•'
	return f
}

func (f *textField) focus(int) tea.Cmd {
	cmd := f.in.Focus()
	f.in.CursorEnd()
	return cmd
}

func (f *textField) blur() {
	if f.in.Focused() {
		f.touched = true
	}
	f.in.Blur()
}

func (f *textField) reload(e *env) {
	f.in.SetValue(f.bind.get(e.site))
	f.in.CursorEnd()
	f.perr = nil
}

// navigation keys belong to the form, not to the text.
var formKeys = key.NewBinding(key.WithKeys("tab", "shift+tab", "up", "down", "enter", "esc", "ctrl+n", "ctrl+c", "ctrl+s"))

func (f *textField) update(e *env, msg tea.KeyPressMsg) outcome {
	if key.Matches(msg, formKeys) {
		return outcome{}
	}
	before := f.in.Value()
	var cmd tea.Cmd
	f.in, cmd = f.in.Update(msg)
	o := outcome{handled: true, cmd: cmd}
	if v := f.in.Value(); v != before {
		f.touched = true
		f.perr = f.bind.set(e.site, v)
		o.changed = true
	}
	return o
}

func (f *textField) view(e *env, focused bool, width int) string {
	f.in.SetStyles(e.th.input)
	f.in.SetWidth(max(width-1, 1))
	if f.hint != nil {
		f.in.Placeholder = f.hint(e)
	}
	if !focused && f.in.Value() == "" {
		return e.th.input.Blurred.Placeholder.Render(truncate(f.in.Placeholder, width))
	}
	if !focused {
		v := f.in.Value()
		if f.secret {
			v = repeat('•', len([]rune(v)))
		}
		return e.th.value.Render(truncate(v, width))
	}
	return f.in.View()
}

func (f *textField) filled(*env) bool    { return f.in.Value() != "" }
func (f *textField) local() error        { return f.perr }
func (f *textField) keys() []key.Binding { return nil }
func (f *textField) ask(a *asker) error  { return a.text(f) }

package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// page is what one step shows and does.
type page interface {
	// enter runs when the step comes into view.
	enter(m *model) tea.Cmd
	// update handles a key; false leaves it to the wizard (next, back).
	update(m *model, msg tea.KeyPressMsg) (tea.Cmd, bool)
	view(m *model, width, height int) string
	keys(m *model) []key.Binding
	// blocking lists what keeps the step from being left forward.
	blocking(m *model) []string
	// reload reads the page's values from the site again (a draft was
	// resumed).
	reload(m *model)
	// attempt shows every problem after a refused Next.
	attempt(m *model) tea.Cmd
}

// receiver is a page that takes the results of work it started.
type receiver interface {
	receive(m *model, msg tea.Msg) tea.Cmd
}

// formPage is a step made of fields: Welcome to Databases.
type formPage struct {
	id    stepID
	intro string
	form  *form
}

// newFormPage makes a step of fields, with a Next button at the end.
func newFormPage(id stepID, intro string, fields ...field) *formPage {
	next := newButton("next", label("Next: "+stepNames[id+1].long+" ›"))
	return &formPage{id: id, intro: intro, form: newForm(append(fields, next)...)}
}

func (p *formPage) enter(m *model) tea.Cmd {
	return p.form.setFocus(p.form.cur, 1)
}

func (p *formPage) update(m *model, msg tea.KeyPressMsg) (tea.Cmd, bool) {
	e := m.env(p.id)
	o := p.form.update(e, msg)
	var cmds []tea.Cmd
	if o.changed {
		cmds = append(cmds, m.changed())
	}
	cmds = append(cmds, o.cmd)
	if o.action == "next" {
		cmds = append(cmds, m.next())
	}
	return tea.Batch(cmds...), o.handled
}

func (p *formPage) view(m *model, width, height int) string {
	e := m.env(p.id)
	title := stepNames[p.id].long
	intro := p.intro
	if l := p.form.capture(); l != nil {
		t, line := l.kind.describe(m.site, l.editing)
		title += " › " + t
		intro = line
		return m.pageFrame(title, intro, width, height, func(h int) string { return l.editorView(e, width, h) })
	}
	return m.pageFrame(title, intro, width, height, func(h int) string {
		body := p.form.view(e, width, h)
		if extra := p.unplaced(m); len(extra) > 0 && strings.Count(body, "\n")+len(extra) < h {
			body += "\n" + strings.Join(extra, "\n")
		}
		return body
	})
}

// unplaced draws the step's problems that no field shows.
func (p *formPage) unplaced(m *model) []string {
	var out []string
	for _, fe := range ownedBy(m.errs, p.id) {
		placed := false
		for _, fl := range p.form.fields {
			b := fl.info()
			if (b.path != "" && under(fe.Path, b.path)) || (b.also != nil && b.also(fe)) {
				placed = true
				break
			}
		}
		if !placed {
			out = append(out, m.th.errText.Render("  ✗ "+problemText(m.site, fe)))
		}
	}
	return out
}

func (p *formPage) keys(m *model) []key.Binding {
	if l := p.form.capture(); l != nil {
		return l.keys()
	}
	return append(p.form.keys(), keys.NextStep, keys.Back)
}

func (p *formPage) blocking(m *model) []string {
	var out []string
	if l := p.form.capture(); l != nil {
		out = append(out, "finish editing the "+l.kind.noun()+" first")
	}
	for _, fl := range p.form.fields {
		if err := fl.local(); err != nil {
			out = append(out, err.Error())
		}
	}
	for _, fe := range ownedBy(m.errs, p.id) {
		out = append(out, problemText(m.site, fe))
	}
	return out
}

func (p *formPage) reload(m *model) { p.form.reload(m.env(p.id)) }

func (p *formPage) attempt(m *model) tea.Cmd {
	if p.form.capture() != nil {
		return nil
	}
	return p.form.focusFirstProblem(m.env(p.id))
}

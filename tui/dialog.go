package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// dialog is a box in front of the page that takes every key until it
// closes: a question, or work in progress.
type dialog interface {
	// update handles a key or a result; true closes the dialog.
	update(m *model, msg tea.Msg) (tea.Cmd, bool)
	// view draws the box's content, width cells wide at most.
	view(m *model, width int) string
	keys() []key.Binding
}

// quitDialog asks before leaving the wizard.
type quitDialog struct{}

func (quitDialog) update(m *model, msg tea.Msg) (tea.Cmd, bool) {
	k, ok := msg.(tea.KeyPressMsg)
	switch {
	case !ok:
		return nil, false
	case key.Matches(k, keys.Yes), k.String() == "ctrl+c":
		return m.quit(), true
	case key.Matches(k, keys.No):
		return nil, true
	}
	return nil, false
}

func (quitDialog) view(m *model, width int) string {
	var b strings.Builder
	b.WriteString(m.th.title.Render("Leave the wizard?") + "\n\n")
	msg := "You have not changed anything."
	if m.saved != "" {
		msg = "The site is saved in " + m.saved + "."
	}
	if m.dirty {
		msg = fmt.Sprintf("Your answers are kept as a draft in %s and offered when you start the wizard again.", m.draftAt.path())
	}
	b.WriteString(strings.Join(wrap(msg, width), "\n"))
	return b.String()
}

func (quitDialog) keys() []key.Binding {
	return []key.Binding{
		key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "leave")),
		key.NewBinding(key.WithKeys("n"), key.WithHelp("n/esc", "stay")),
	}
}

// draftDialog offers the draft found at start.
type draftDialog struct{ d *draft }

func (dd *draftDialog) update(m *model, msg tea.Msg) (tea.Cmd, bool) {
	k, ok := msg.(tea.KeyPressMsg)
	switch {
	case !ok:
		return nil, false
	case key.Matches(k, keys.Yes), k.String() == "enter":
		return m.resume(dd.d), true
	case k.String() == "n", k.String() == "N":
		if err := removeDraft(m.draftAt); err != nil {
			m.setStatus(true, err.Error())
		} else {
			m.setStatus(false, "Started over; the old draft is gone.")
		}
		return nil, true
	case k.String() == "ctrl+c":
		return tea.Quit, true
	}
	return nil, false
}

func (dd *draftDialog) view(m *model, width int) string {
	site := dd.d.Site.Site
	if site == "" {
		site = "(not named yet)"
	}
	msg := fmt.Sprintf("A draft of %s saved %s is in %s: site %s, at the step %s.",
		m.draftAt.site, dd.d.Saved.Local().Format("2006-01-02 15:04"), m.draftAt.dir, site, stepNames[dd.d.Step].long)
	return m.th.title.Render("Resume where you left off?") + "\n\n" + strings.Join(wrap(msg, width), "\n") +
		"\n\n" + strings.Join(wrap("y resumes it with every answer; n starts over and drops the draft.", width), "\n")
}

func (dd *draftDialog) keys() []key.Binding {
	return []key.Binding{
		key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "resume")),
		key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "start over")),
	}
}

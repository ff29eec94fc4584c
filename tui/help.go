package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// helpDialog is the full help: every key of the screen it was opened on,
// the keys that work everywhere, and the steps to jump to.
type helpDialog struct {
	screen []key.Binding // the keys of the screen below
}

// helpKey opens the full help: ? where no field takes it, F1 always.
var helpKey = key.NewBinding(key.WithKeys("?", "f1"), key.WithHelp("?", "all keys"))

func (helpDialog) full() bool { return true }

func (helpDialog) update(_ *model, msg tea.Msg) (tea.Cmd, bool) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil, false
	}
	switch k.String() {
	case "?", "f1", "esc", "q", "enter", "ctrl+c":
		return nil, true
	}
	return nil, false
}

func (d helpDialog) view(m *model, width int) string {
	var b strings.Builder
	b.WriteString(m.th.title.Render("Keys") + "\n\n")
	row := func(k, what string) {
		b.WriteString("  " + m.th.labelFocus.Render(pad(k, 16)) + m.th.desc.Render(truncate(what, max(width-18, 1))) + "\n")
	}
	section := func(name string) { b.WriteString(m.th.value.Render(name) + "\n") }
	section("On this screen")
	seen := map[string]bool{}
	for _, k := range d.screen {
		h := k.Help()
		if h.Key == "" || seen[h.Key] {
			continue
		}
		seen[h.Key] = true
		row(h.Key, h.Desc)
	}
	b.WriteString("\n")
	section("Everywhere")
	for _, r := range [][2]string{
		{"ctrl+n", "next step (when this one has no problems)"},
		{"esc", "back: to the list, to the menu, to the step before"},
	} {
		if !seen[r[0]] { // told above, for this screen
			row(r[0], r[1])
		}
	}
	row("alt+1 … alt+9", fmt.Sprintf("go to step 1 to %d; 1 … 9 too where no field takes digits", int(stepCount)))
	row("click", "a step in the step list goes there")
	row("ctrl+c", "leave (asks first; your answers stay in the draft)")
	row("? or F1", "this help; any of esc, ? or q closes it")
	b.WriteString("\n")
	section("Steps")
	var names []string
	for id := stepWelcome; id < stepCount; id++ {
		names = append(names, fmt.Sprintf("%d %s", int(id)+1, stepNames[id].short))
	}
	for _, l := range wrap(strings.Join(names, " · "), width-2) {
		b.WriteString("  " + m.th.desc.Render(l) + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (helpDialog) keys() []key.Binding {
	return []key.Binding{key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc/?", "close"))}
}

package tui

import "charm.land/bubbles/v2/key"

// keys are the wizard's key bindings. Each screen shows the ones it
// answers to in its help line.
var keys = struct {
	Next, Prev, Enter, NextStep, Back, Quit          key.Binding
	Choose, Toggle, MoveOption                       key.Binding
	Rows, Edit, Add, Remove, Yes, No                 key.Binding
	Tabs, Scroll, Page, Confirm, Close, Done, ToList key.Binding
}{
	Next:       key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next")),
	Prev:       key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "prev")),
	Enter:      key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next")),
	NextStep:   key.NewBinding(key.WithKeys("ctrl+n"), key.WithHelp("ctrl+n", "next step")),
	Back:       key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
	Quit:       key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit")),
	Choose:     key.NewBinding(key.WithKeys("left", "right", "space"), key.WithHelp("←/→", "choose")),
	Toggle:     key.NewBinding(key.WithKeys("space", "x"), key.WithHelp("space", "tick")),
	MoveOption: key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "move")),
	Rows:       key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑/↓", "rows")),
	Edit:       key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "edit")),
	Add:        key.NewBinding(key.WithKeys("a", "+", "insert"), key.WithHelp("a", "add")),
	Remove:     key.NewBinding(key.WithKeys("x", "delete", "-"), key.WithHelp("x", "remove")),
	Yes:        key.NewBinding(key.WithKeys("y", "Y"), key.WithHelp("y", "yes")),
	No:         key.NewBinding(key.WithKeys("n", "N", "esc"), key.WithHelp("n", "no")),
	Tabs:       key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "node")),
	Scroll:     key.NewBinding(key.WithKeys("up", "down", "j", "k"), key.WithHelp("↑/↓", "scroll")),
	Page:       key.NewBinding(key.WithKeys("pgup", "pgdown", "space", "b"), key.WithHelp("pgup/pgdn", "page")),
	Confirm:    key.NewBinding(key.WithKeys("c", "C"), key.WithHelp("c", "confirm")),
	Close:      key.NewBinding(key.WithKeys("esc", "enter", "q"), key.WithHelp("esc", "close")),
	Done:       key.NewBinding(key.WithKeys("ctrl+s"), key.WithHelp("ctrl+s", "done")),
	ToList:     key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "list")),
}

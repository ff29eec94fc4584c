package tui

import (
	"image/color"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/textinput"
	"charm.land/lipgloss/v2"
)

// theme is every style the wizard draws with, chosen for the terminal's
// background: the same roles read well on dark and on light terminals.
type theme struct {
	dark bool

	accent, ok, bad, warn, dim, faint, border color.Color

	header     lipgloss.Style // the top line
	headerDim  lipgloss.Style
	sidebar    lipgloss.Style // the box of steps
	stepDone   lipgloss.Style
	stepBad    lipgloss.Style
	stepCur    lipgloss.Style
	stepTodo   lipgloss.Style
	title      lipgloss.Style // a step's title
	intro      lipgloss.Style // a step's one-paragraph introduction
	label      lipgloss.Style // a field's label
	labelFocus lipgloss.Style
	value      lipgloss.Style
	desc       lipgloss.Style // the focused field's description
	errText    lipgloss.Style // a problem beside a field
	noteText   lipgloss.Style // a remark that does not block
	okText     lipgloss.Style
	marker     lipgloss.Style // the ▸ in front of the focused field
	button     lipgloss.Style
	buttonOn   lipgloss.Style
	rowOn      lipgloss.Style // the selected row of a list
	status     lipgloss.Style
	dialog     lipgloss.Style // a box in front of the page
	code       lipgloss.Style // review text
	tab        lipgloss.Style
	tabOn      lipgloss.Style
	help       help.Styles
	input      textinput.Styles
}

// newTheme builds the styles for a dark or a light background.
func newTheme(dark bool) *theme {
	ld := lipgloss.LightDark(dark)
	t := &theme{
		dark:   dark,
		accent: ld(lipgloss.Color("#5B3CC4"), lipgloss.Color("#B59CFF")),
		ok:     ld(lipgloss.Color("#0B7A4B"), lipgloss.Color("#5FD89A")),
		bad:    ld(lipgloss.Color("#B3261E"), lipgloss.Color("#FF7B72")),
		warn:   ld(lipgloss.Color("#8A5A00"), lipgloss.Color("#E3B341")),
		dim:    ld(lipgloss.Color("#5F6368"), lipgloss.Color("#A0A4AB")),
		faint:  ld(lipgloss.Color("#8A8F98"), lipgloss.Color("#6E7681")),
		border: ld(lipgloss.Color("#B8B3CC"), lipgloss.Color("#4A4560")),
	}
	s := lipgloss.NewStyle
	t.header = s().Bold(true).Foreground(t.accent)
	t.headerDim = s().Foreground(t.dim)
	t.sidebar = s().Border(lipgloss.RoundedBorder()).BorderForeground(t.border).Padding(0, 1)
	t.stepDone = s().Foreground(t.ok)
	t.stepBad = s().Foreground(t.bad)
	t.stepCur = s().Bold(true).Foreground(t.accent)
	t.stepTodo = s().Foreground(t.dim)
	t.title = s().Bold(true).Foreground(t.accent)
	t.intro = s().Foreground(t.dim)
	t.label = s()
	t.labelFocus = s().Bold(true).Foreground(t.accent)
	t.value = s()
	t.desc = s().Foreground(t.dim).Italic(true)
	t.errText = s().Foreground(t.bad)
	t.noteText = s().Foreground(t.warn)
	t.okText = s().Foreground(t.ok)
	t.marker = s().Bold(true).Foreground(t.accent)
	t.button = s().Foreground(t.dim)
	t.buttonOn = s().Bold(true).Foreground(t.accent)
	t.rowOn = s().Bold(true)
	t.status = s().Foreground(t.dim)
	t.dialog = s().Border(lipgloss.RoundedBorder()).BorderForeground(t.accent).Padding(1, 2)
	t.code = s()
	t.tab = s().Foreground(t.dim).Padding(0, 1)
	t.tabOn = s().Bold(true).Foreground(t.accent).Padding(0, 1).Underline(true)

	t.help = help.DefaultStyles(dark)
	t.help.ShortKey = s().Foreground(t.accent)
	t.help.ShortDesc = s().Foreground(t.dim)
	t.help.ShortSeparator = s().Foreground(t.faint)
	t.help.Ellipsis = s().Foreground(t.faint)

	t.input = textinput.DefaultStyles(dark)
	t.input.Focused.Prompt = s()
	t.input.Blurred.Prompt = s()
	t.input.Focused.Text = s()
	t.input.Blurred.Text = s()
	t.input.Focused.Placeholder = s().Foreground(t.faint)
	t.input.Blurred.Placeholder = s().Foreground(t.faint)
	t.input.Cursor.Color = t.accent
	t.input.Cursor.Blink = false
	return t
}

package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// sidebarWidth is the width of the step list, borders included; below
// fullSidebarWindow columns it folds to the steps' numbers (foldedWidth),
// the step's name going into the header, so that fields and the help line
// fit; below minSidebarWindow it gives way to the header alone.
const (
	sidebarWidth      = 27
	foldedWidth       = 7
	fullSidebarWindow = 100
	minSidebarWindow  = 64
)

// sideWidth is the step list's width in a window w columns wide: full,
// folded or none.
func sideWidth(w int) int {
	switch {
	case w >= fullSidebarWindow:
		return sidebarWidth
	case w >= minSidebarWindow:
		return foldedWidth
	}
	return 0
}

// View draws the wizard on the alternate screen, again only after an
// update.
func (m *model) View() tea.View {
	if m.framed {
		return m.frame
	}
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.MouseMode = tea.MouseModeCellMotion // a click in the step list goes there
	v.WindowTitle = "ztwizard wizard"
	m.frame, m.framed = v, true
	m.draws++
	return v
}

// render draws the whole screen: header, steps, page, status and help.
func (m *model) render() string {
	w, h := max(m.width, 30), max(m.height, 10)
	midH := h - 3
	sideW := sideWidth(w)
	bodyW := w - sideW - 2
	if sideW == 0 {
		bodyW = w - 2
	}
	if f, ok := m.dialog.(interface{ full() bool }); ok && f.full() {
		body := fit(m.dialog.view(m, w-2), w-2, midH)
		mid := " " + strings.ReplaceAll(body, "\n", "\n ")
		return strings.Join([]string{m.header(w), mid, m.statusLine(w), m.helpLine(w)}, "\n")
	}
	var body string
	if m.dialog != nil {
		body = m.dialogView(bodyW, midH)
	} else {
		body = m.pages[m.cur].view(m, bodyW, midH)
	}
	block := fit(body, bodyW, midH)
	mid := " " + strings.ReplaceAll(block, "\n", "\n ")
	if sideW > 0 {
		mid = lipgloss.JoinHorizontal(lipgloss.Top, m.sidebar(sideW, midH), " ", block)
	}
	return strings.Join([]string{m.header(w), mid, m.statusLine(w), m.helpLine(w)}, "\n")
}

// fit makes s exactly width x height cells: lines cut or padded.
func fit(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > height {
		lines = lines[:height]
	}
	for len(lines) < height {
		lines = append(lines, "")
	}
	for i, l := range lines {
		lines[i] = pad(l, width)
	}
	return strings.Join(lines, "\n")
}

// header is the top line: the product, the site, and the draft's state.
func (m *model) header(w int) string {
	left := m.th.header.Render(" ztwizard")
	site := m.site.Site
	if site == "" {
		site = "new site"
	}
	left += m.th.headerDim.Render(" · " + site)
	if w < fullSidebarWindow {
		left += m.th.headerDim.Render(" · " + itoa(int(m.cur)+1) + "/" + itoa(int(stepCount)) + " " + stepNames[m.cur].short)
	} else if m.o.Source != "" {
		left += m.th.headerDim.Render(" · " + m.o.Source)
	}
	right := m.th.headerDim.Render(m.draftNote + " ")
	gap := w - lipgloss.Width(left) - lipgloss.Width(right)
	if gap < 1 {
		return pad(left, w)
	}
	return left + strings.Repeat(" ", gap) + right
}

// stepState is how the sidebar marks a step.
func (m *model) stepState(id stepID) (icon string, st lipgloss.Style) {
	var bad bool
	switch id {
	case stepReview:
		bad = len(m.errs) > 0 || len(m.pages[stepReview].(*reviewPage).failed(m)) > 0
	case stepFinish:
	default:
		bad = len(ownedBy(m.errs, id)) > 0
	}
	switch {
	case id == m.cur:
		return "▸", m.th.stepCur
	case bad && id <= m.reached:
		return "✗", m.th.stepBad
	case id < m.reached || (id == m.reached && id != m.cur && !bad):
		return "✓", m.th.stepDone
	}
	return "·", m.th.stepTodo
}

// sidebar is the boxed list of steps, width columns wide (full or folded
// to the steps' numbers) and height lines tall.
func (m *model) sidebar(width, height int) string {
	inner := width - 4
	var lines []string
	for id := stepWelcome; id < stepCount; id++ {
		icon, st := m.stepState(id)
		name := stepNames[id].short
		if width < sidebarWidth {
			name = itoa(int(id) + 1)
		}
		lines = append(lines, st.Render(pad(icon+" "+name, inner)))
	}
	for len(lines) < height-2 {
		lines = append(lines, strings.Repeat(" ", inner))
	}
	return m.th.sidebar.Render(strings.Join(lines[:max(height-2, 0)], "\n"))
}

// pageFrame draws a page: its title, its introduction, then content in
// the height that is left.
func (m *model) pageFrame(title, intro string, width, height int, content func(h int) string) string {
	lines := []string{m.th.title.Render(truncate(title, width))}
	if intro != "" {
		in := wrap(intro, width)
		if len(in) > 4 && height < 30 {
			in = append(in[:3], truncate(in[3]+" …", width))
		}
		for _, l := range in {
			lines = append(lines, m.th.intro.Render(l))
		}
	}
	lines = append(lines, "")
	return strings.Join(lines, "\n") + "\n" + content(height-len(lines))
}

// dialogView draws the dialog in a box in the middle of the page.
func (m *model) dialogView(width, height int) string {
	boxW := min(width, max(64, width/2))
	inner := boxW - m.th.dialog.GetHorizontalFrameSize()
	box := m.th.dialog.Width(boxW).Render(m.dialog.view(m, inner))
	return lipgloss.Place(width, height, lipgloss.Center, lipgloss.Center, box)
}

// fieldKeys are Next and Prev in one, for the short help line.
var fieldKeys = key.NewBinding(key.WithKeys("tab", "shift+tab", "up", "down"), key.WithHelp("tab/↑↓", "fields"))

// statusLine is the last message, if any.
func (m *model) statusLine(w int) string {
	if m.status == "" {
		return ""
	}
	st := m.th.okText
	if m.statusBad {
		st = m.th.errText
	}
	return st.Render(" " + truncate(m.status, w-2))
}

// helpLine lists the keys of the current screen.
func (m *model) helpLine(w int) string {
	var b []key.Binding
	if m.dialog != nil {
		b = m.dialog.keys()
	} else {
		b = append(b, m.pages[m.cur].keys(m)...)
		b = append(b, keys.Quit)
		if _, ok := m.pages[m.cur].(*formPage); ok {
			b = append(b, fieldKeys)
		}
	}
	m.help.Styles = m.th.help
	more := ""
	if m.dialog == nil {
		// The full help is always offered, however little room is left.
		more = m.help.ShortHelpView([]key.Binding{helpKey})
	}
	m.help.SetWidth(w - 1 - lipgloss.Width(more) - 3)
	line := " " + m.help.ShortHelpView(b)
	if more != "" {
		line += m.th.help.ShortSeparator.Render(" • ") + more
	}
	return line
}

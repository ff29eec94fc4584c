package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// exportDialog shows what an export wrote and, for a node, its WireGuard
// configuration as a QR code to scan with a phone. It takes the whole
// screen, so the code has room.
type exportDialog struct {
	title string // "": Exported WHAT NAME
	next  string // what to run next, if anything: lines, wrapped to fit
	msg   exportMsg
	qr    string
	qrH   int
	err   error
	vp    viewport.Model
	short int // rows missing to show the whole code
}

func newExportDialog(_ *model, msg exportMsg) *exportDialog {
	d := &exportDialog{msg: msg, vp: viewport.New()}
	if len(msg.out.WireGuard) > 0 {
		qr, err := qrText(wgPayload(msg.out.WireGuard))
		paint := lipgloss.NewStyle().Foreground(lipgloss.Color("#FFFFFF")).Background(lipgloss.Color("#000000"))
		lines := strings.Split(qr, "\n")
		for i, l := range lines {
			lines[i] = paint.Render(l)
		}
		d.qr, d.qrH, d.err = strings.Join(lines, "\n"), len(lines), err
	}
	return d
}

// wgPayload is a wg-quick file without its comments and blank lines: the
// same configuration in a smaller code.
func wgPayload(conf []byte) []byte {
	var out []string
	for _, l := range strings.Split(string(conf), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

func (d *exportDialog) full() bool { return d.qr != "" }

func (d *exportDialog) update(_ *model, msg tea.Msg) (tea.Cmd, bool) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil, false
	}
	switch k.String() {
	case "up", "k":
		d.vp.ScrollUp(1)
	case "down", "j":
		d.vp.ScrollDown(1)
	case "pgup":
		d.vp.PageUp()
	case "pgdown", "space":
		d.vp.PageDown()
	case "esc", "enter", "q":
		return nil, true
	}
	return nil, false
}

func (d *exportDialog) view(m *model, width int) string {
	var b strings.Builder
	title := d.title
	if title == "" {
		title = "Exported " + d.msg.what + " " + d.msg.name
	}
	b.WriteString(m.th.title.Render(title) + "\n")
	for _, f := range d.msg.out.Files {
		b.WriteString(m.th.okText.Render("✓ ") + truncate(f, width-2) + "\n")
	}
	if d.next != "" {
		b.WriteString("\n")
		for _, l := range strings.Split(d.next, "\n") {
			b.WriteString(m.th.desc.Render(strings.Join(wrap(l, width), "\n")) + "\n")
		}
	}
	switch {
	case d.err != nil:
		b.WriteString(m.th.errText.Render(truncate("✗ QR code: "+d.err.Error(), width)))
	case d.qr != "":
		b.WriteString(m.th.desc.Render(truncate("Scan it with the WireGuard app on the phone; it holds the private key.", width)) + "\n")
		room := max(m.height-3-strings.Count(b.String(), "\n")-1, 4)
		d.short = max(d.qrH-room, 0)
		if d.short > 0 {
			room--
			b.WriteString(m.th.noteText.Render(truncate(fmt.Sprintf("The window is %d rows too short for the whole code: enlarge it (↑/↓ scroll).", d.short), width)) + "\n")
		}
		d.vp.SetWidth(width)
		d.vp.SetHeight(min(room, d.qrH))
		if d.vp.GetContent() != d.qr {
			d.vp.SetContent(d.qr)
		}
		b.WriteString(d.vp.View())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (d *exportDialog) keys() []key.Binding {
	if d.short > 0 {
		return []key.Binding{keys.Scroll, keys.Close}
	}
	return []key.Binding{keys.Close}
}

package tui

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
)

// applyDialog applies the site to this host: it asks first, shows each step
// as it runs, then counts down to the rollback until the admin confirms.
type applyDialog struct {
	node     string
	self     string // the node this host looks like, if any
	name     textinput.Model
	wrong    bool // a name was typed that is not the node's
	state    applyState
	done     []string
	ch       chan tea.Msg
	deadline time.Time
	err      error
	outcome  string
}

type applyState int

const (
	applyAsk applyState = iota
	applyRunning
	applyCountdown
	applyConfirming
	applyOver
)

// Messages of a running apply.
type (
	applyStepMsg string
	applyDoneMsg struct {
		deadline time.Time
		err      error
	}
	applyConfirmMsg struct{ err error }
	applyTickMsg    struct{}
)

// next waits for the next message of a running apply.
func next(ch chan tea.Msg) tea.Cmd { return func() tea.Msg { return <-ch } }

func tick(m *model) tea.Cmd {
	return m.after(time.Second, func(time.Time) tea.Msg { return applyTickMsg{} })
}

func (d *applyDialog) update(m *model, msg tea.Msg) (tea.Cmd, bool) {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch d.state {
		case applyAsk:
			switch msg.String() {
			case "enter":
				if strings.TrimSpace(d.name.Value()) != d.node {
					d.wrong = true
					return nil, false
				}
				return d.start(m), false
			case "esc", "ctrl+c":
				return nil, true
			}
			var cmd tea.Cmd
			d.name, cmd = d.name.Update(msg)
			d.wrong = false
			return cmd, false
		case applyCountdown:
			if key.Matches(msg, keys.Confirm) {
				d.state = applyConfirming
				ctx, job, a := m.ctx, m.job(), m.o.Actions
				return func() tea.Msg { return applyConfirmMsg{a.Confirm(ctx, job)} }, false
			}
		case applyOver:
			if key.Matches(msg, keys.Close) {
				return nil, true
			}
		}
	case applyStepMsg:
		d.done = append(d.done, string(msg))
		return next(d.ch), false
	case applyDoneMsg:
		d.err, d.deadline = msg.err, msg.deadline
		switch {
		case msg.err != nil:
			d.state = applyOver
		case msg.deadline.IsZero():
			d.state, d.outcome = applyOver, "Applied."
		default:
			d.state = applyCountdown
			return tick(m), false
		}
	case applyTickMsg:
		if d.state == applyCountdown || d.state == applyConfirming {
			if !m.o.Now().Before(d.deadline) && d.state == applyCountdown {
				d.state = applyOver
				d.outcome = "Not confirmed in time: the firewall and sshd changes roll back."
				return nil, false
			}
			return tick(m), false
		}
	case applyConfirmMsg:
		d.state, d.err = applyOver, msg.err
		if msg.err == nil {
			d.outcome = "Confirmed: the changes stay."
		}
	}
	return nil, false
}

// newApplyDialog asks before node is applied to this host.
func newApplyDialog(m *model, node string) (*applyDialog, tea.Cmd) {
	in := textinput.New()
	in.Prompt = "› "
	in.Placeholder = node
	st := in.Styles()
	st.Cursor.Blink = false
	in.SetStyles(st)
	d := &applyDialog{node: node, name: in}
	if m.o.ThisNode != nil {
		d.self = m.o.ThisNode(m.site)
	}
	return d, d.name.Focus()
}

// start runs the apply, its progress coming back as messages.
func (d *applyDialog) start(m *model) tea.Cmd {
	d.state = applyRunning
	d.ch = make(chan tea.Msg, 64)
	ctx, job, node, a, ch := m.ctx, m.job(), d.node, m.o.Actions, d.ch
	go func() {
		deadline, err := a.Apply(ctx, job, node, func(step string) { ch <- applyStepMsg(step) })
		ch <- applyDoneMsg{deadline, err}
	}()
	return next(ch)
}

func (d *applyDialog) view(m *model, width int) string {
	var b strings.Builder
	b.WriteString(m.th.title.Render("Apply node "+d.node+" to this host") + "\n\n")
	para := func(st func(...string) string, s string) {
		b.WriteString(st(strings.Join(wrap(s, width), "\n")) + "\n")
	}
	if d.state == applyAsk {
		para(m.th.value.Render, "This changes THIS machine: its firewall, sshd, WireGuard and services become node "+d.node+"'s.")
		switch d.self {
		case d.node:
			para(m.th.desc.Render, "This host looks like node "+d.node+" (its host name or endpoint address).")
		case "":
			para(m.th.noteText.Render, "This host does not look like node "+d.node+": neither its host name nor its endpoint address is this host's.")
		default:
			para(m.th.errText.Render, "This host looks like node "+d.self+", not "+d.node+".")
		}
		b.WriteString("\n")
		para(m.th.desc.Render, "The firewall and sshd changes roll back by themselves unless you confirm them in time, "+
			"so a mistake cannot lock you out.")
		b.WriteString("\n")
		para(m.th.value.Render, "Type the node's name to apply it:")
		d.name.SetWidth(max(width-2, 1))
		b.WriteString(d.name.View() + "\n")
		if d.wrong {
			para(m.th.errText.Render, "✗ that is not "+d.node)
		}
		return strings.TrimSuffix(b.String(), "\n")
	}
	for _, s := range d.done {
		b.WriteString(m.th.okText.Render("✓ ") + truncate(s, width-2) + "\n")
	}
	switch d.state {
	case applyRunning:
		b.WriteString(m.th.desc.Render("… working") + "\n")
	case applyCountdown, applyConfirming:
		left := max(d.deadline.Sub(m.o.Now()).Round(time.Second), 0)
		b.WriteString("\n")
		para(m.th.noteText.Render, fmt.Sprintf("Confirm within %d:%02d, or the firewall and sshd changes roll back.",
			int(left.Minutes()), int(left.Seconds())%60))
		para(m.th.desc.Render, "Open a NEW ssh session first to check that you can still get in.")
		if d.state == applyConfirming {
			para(m.th.desc.Render, "… confirming")
		}
	case applyOver:
		switch {
		case errors.Is(d.err, ErrNotAvailable):
			para(m.th.noteText.Render, plainly(d.err))
			b.WriteString("\n")
			para(m.th.desc.Render, "Nothing was changed. Meanwhile, write the node's bundle and copy it over.")
		case d.err != nil:
			para(m.th.errText.Render, "✗ "+d.err.Error())
		default:
			para(m.th.okText.Render, d.outcome)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (d *applyDialog) keys() []key.Binding {
	switch d.state {
	case applyAsk:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "apply once named")),
			key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel"))}
	case applyCountdown:
		return []key.Binding{keys.Confirm}
	case applyOver:
		return []key.Binding{keys.Close}
	}
	return nil
}

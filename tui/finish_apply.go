package tui

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// applyDialog applies the site to this host: it asks first, shows each step
// as it runs, then counts down to the rollback until the admin confirms.
type applyDialog struct {
	node     string
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
			switch {
			case key.Matches(msg, keys.Yes):
				return d.start(m), false
			case key.Matches(msg, keys.No), msg.String() == "ctrl+c":
				return nil, true
			}
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
		b.WriteString("\n")
		para(m.th.desc.Render, "The firewall and sshd changes roll back by themselves unless you confirm them in time, "+
			"so a mistake cannot lock you out.")
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
		return []key.Binding{key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "apply now")),
			key.NewBinding(key.WithKeys("n"), key.WithHelp("n/esc", "cancel"))}
	case applyCountdown:
		return []key.Binding{keys.Confirm}
	case applyOver:
		return []key.Binding{keys.Close}
	}
	return nil
}

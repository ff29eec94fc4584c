package tui

import (
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
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
		if m.o.askStart {
			m.dialog = startDialog{}
			return nil, false
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

// unlockMsg is the result of checking the passphrase against the CA keys,
// for the passphrase and state folder in key.
type unlockMsg struct {
	key string
	err error
}

// unlockKey is what a check of the CA keys depends on.
func (m *model) unlockKey() string { return m.sess.stateDir + "\x00" + m.sess.passphrase }

// checkUnlock checks, once per passphrase and state folder, that the CA
// keys open; a dialog asks for the passphrase when they do not.
func (m *model) checkUnlock() tea.Cmd {
	if m.o.Actions == nil || m.unlocked == m.unlockKey() {
		return nil
	}
	ctx, job, k, a := m.ctx, m.job(), m.unlockKey(), m.o.Actions
	return func() tea.Msg { return unlockMsg{k, a.Unlock(ctx, job)} }
}

// unlocked takes the result of a check.
func (m *model) takeUnlock(msg unlockMsg) tea.Cmd {
	if msg.key != m.unlockKey() {
		return nil
	}
	d, asking := m.dialog.(*unlockDialog)
	switch {
	case msg.err == nil:
		m.unlocked = msg.key
		if asking {
			m.dialog = nil
			m.setStatus(false, "The CA keys are unlocked.")
			if r, ok := m.pages[stepReview].(*reviewPage); ok {
				r.version = -1
			}
			return m.pages[m.cur].enter(m)
		}
	case errors.Is(msg.err, ErrLocked):
		if !asking {
			d = newUnlockDialog()
			m.dialog = d
		}
		d.problem = strings.TrimPrefix(msg.err.Error(), ErrLocked.Error()+": ")
		d.problem = strings.ToUpper(d.problem[:1]) + d.problem[1:] + "."
		return d.in.Focus()
	default:
		m.setStatus(true, msg.err.Error())
	}
	return nil
}

// unlockDialog asks for the passphrase of CA keys that are encrypted.
type unlockDialog struct {
	in      textinput.Model
	problem string
}

func newUnlockDialog() *unlockDialog {
	in := textinput.New()
	in.Prompt = "Passphrase: "
	in.EchoMode = textinput.EchoPassword
	in.EchoCharacter = '•'
	st := in.Styles()
	st.Cursor.Blink = false
	in.SetStyles(st)
	return &unlockDialog{in: in}
}

func (d *unlockDialog) update(m *model, msg tea.Msg) (tea.Cmd, bool) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil, false
	}
	switch k.String() {
	case "enter":
		m.sess.passphrase = d.in.Value()
		m.sess.again = ""
		m.pages[stepWelcome].reload(m)
		d.problem = "Checking…"
		return m.checkUnlock(), false
	case "esc":
		m.setStatus(true, "The CA keys stay locked: the review and Finish cannot use them.")
		return nil, true
	case "ctrl+c":
		m.dialog = &quitDialog{}
		return nil, false
	}
	var cmd tea.Cmd
	d.in, cmd = d.in.Update(k)
	return cmd, false
}

func (d *unlockDialog) view(m *model, width int) string {
	var b strings.Builder
	b.WriteString(m.th.title.Render("Unlock the CA") + "\n\n")
	b.WriteString(strings.Join(wrap(d.problem, width), "\n") + "\n\n")
	d.in.SetWidth(max(width-len(d.in.Prompt)-1, 1))
	b.WriteString(d.in.View())
	return b.String()
}

func (d *unlockDialog) keys() []key.Binding {
	return []key.Binding{
		key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "unlock")),
		key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "not now")),
	}
}

// startDialog asks what to start from when there is no site file yet.
type startDialog struct{}

func (startDialog) update(m *model, msg tea.Msg) (tea.Cmd, bool) {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil, false
	}
	switch k.String() {
	case "e", "E":
		m.start(Empty(), "from scratch")
		return m.pages[m.cur].enter(m), true
	case "x", "X", "enter":
		m.start(steps.Example(), "the example site")
		return m.pages[m.cur].enter(m), true
	case "ctrl+c":
		return tea.Quit, true
	}
	return nil, false
}

func (startDialog) view(m *model, width int) string {
	msg := fmt.Sprintf("There is no %s yet. Start from an empty site, or from the example (two nodes, a service, a database) to change?", m.sess.sitePath)
	return m.th.title.Render("Start from what?") + "\n\n" + strings.Join(wrap(msg, width), "\n") +
		"\n\n" + strings.Join(wrap("e starts from an empty site; x or enter from the example.", width), "\n")
}

func (startDialog) keys() []key.Binding {
	return []key.Binding{
		key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "empty site")),
		key.NewBinding(key.WithKeys("x", "enter"), key.WithHelp("x/enter", "the example")),
	}
}

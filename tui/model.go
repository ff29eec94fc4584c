package tui

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
	"ztwizard/steps/authority"
)

// draftDelay is how long the wizard waits after a change before it writes
// the draft, so typing does not write on every key.
const draftDelay = 600 * time.Millisecond

// session is what the wizard knows besides the site.
type session struct {
	stateDir   string // where the Finish actions keep secrets
	passphrase string // never written down
	again      string // the passphrase typed a second time
	sitePath   string // where Save writes

	// record is the state folder's record of mesh addresses (read from
	// recordDir), so that the wizard shows the addresses render and apply
	// give, however nodes were removed or inserted since.
	record    map[string]netip.Addr
	recordDir string
	recordErr error
}

// refreshRecord reads the state folder's record of mesh addresses again.
func (s *session) refreshRecord() {
	s.record, s.recordErr = authority.RecordedAddresses(s.stateDir)
	s.recordDir = s.stateDir
}

// addresses are the mesh addresses the site's nodes get, with the state
// folder's record, as render and apply allocate them; nil when they cannot
// be told (the site's problems say why).
func (s *session) addresses(site *steps.Site) map[string]netip.Addr {
	if s.recordDir != s.stateDir || s.record == nil && s.recordErr == nil {
		s.refreshRecord()
	}
	addrs, err := site.Addresses(s.record)
	if err != nil {
		return nil
	}
	return addrs
}

// model is the wizard as a bubbletea model.
type model struct {
	ctx     context.Context
	o       Options
	site    *steps.Site
	errs    steps.Errors
	sess    session
	th      *theme
	help    help.Model
	pages   [stepCount]page
	cur     stepID
	reached stepID // the furthest step reached
	version int    // counts changes to the site, so stale results are ignored
	// frame is the last view drawn, valid while framed: bubbletea asks for
	// a view after every message, five times before the first frame.
	frame  tea.View
	framed bool
	draws  int // frames drawn

	width, height int
	status        string
	statusBad     bool
	dialog        dialog // the box in front of the page, if any

	// after makes a timer (tea.Tick); tests that drive the model by hand
	// leave timers out.
	after func(time.Duration, func(time.Time) tea.Msg) tea.Cmd

	dirty     bool      // changed since the site file was saved
	drafted   bool      // a draft of this session is on disk
	draftSeq  int       // the last change's number, for the delayed draft write
	draftNote string    // "draft saved", or why it was not
	draftAt   draftFile // the draft: in the state folder the wizard started with, for its site file
	saved     string    // the site file last saved, for the goodbye
	unlocked  string    // the unlockKey the CA keys were last found to open with
}

// newModel makes the wizard for o; a draft in the state folder is offered
// before anything else.
func newModel(ctx context.Context, o Options) *model {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Site == nil {
		o.Site = Empty()
	}
	m := &model{
		ctx:    ctx,
		o:      o,
		site:   o.Site.Clone(),
		sess:   session{stateDir: o.StateDir, passphrase: string(o.Passphrase), sitePath: o.SitePath},
		th:     newTheme(true),
		help:   help.New(),
		width:  80,
		height: 24,
		after:  tea.Tick,
	}
	if m.sess.sitePath == "" {
		m.sess.sitePath = "site.yaml"
	}
	m.draftAt = draftFor(o.StateDir, m.sess.sitePath)
	if o.Loaded {
		m.reached = stepReview
	}
	m.pages = [stepCount]page{
		welcomePage(m), caPage(m), meshPage(m), mtlsPage(m), sshPage(m),
		firewallPage(m), databasesPage(m), newReviewPage(), newFinishPage(m),
	}
	learnLabels(m.pages[:])
	m.errs = validate(m.site)
	m.reloadAll()
	if o.askStart {
		m.dialog = startDialog{}
	}
	if d, err := loadDraft(m.draftAt); err != nil {
		m.setStatus(true, err.Error())
	} else if d != nil {
		m.dialog = &draftDialog{d: d}
	}
	return m
}

// env is the fields' view of the wizard for step id.
func (m *model) env(id stepID) *env {
	return &env{site: m.site, errs: m.errs, th: m.th, step: id, sess: &m.sess}
}

// reloadAll reads every page's values from the site again.
func (m *model) reloadAll() {
	for _, p := range m.pages {
		p.reload(m)
	}
}

// Init asks for the terminal's background, to pick the theme.
func (m *model) Init() tea.Cmd {
	return tea.Batch(tea.RequestBackgroundColor, m.pages[m.cur].enter(m))
}

// draftTick is the delayed draft write after change number seq.
type draftTick int

// Update handles keys, the window size, and the results of work. The
// frame is drawn again after any message but those nothing drawn depends
// on: the color profile and environment bubbletea sends at the start (the
// renderer converts colors itself), and a window size that did not change.
func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.ColorProfileMsg, tea.EnvMsg:
		return m, nil
	case tea.WindowSizeMsg:
		if msg.Width == m.width && msg.Height == m.height {
			return m, nil
		}
	}
	m.framed = false
	return m.update(msg)
}

// update is Update's work.
func (m *model) update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		return m, nil
	case tea.BackgroundColorMsg:
		m.th = newTheme(msg.IsDark())
		return m, nil
	case draftTick:
		if int(msg) == m.draftSeq {
			m.saveDraft()
		}
		return m, nil
	case tea.PasteMsg:
		return m, m.paste(msg.Content)
	case unlockMsg:
		return m, m.takeUnlock(msg)
	}
	if c, ok := msg.(tea.MouseClickMsg); ok && m.dialog == nil {
		if to, ok := m.stepAt(c.Mouse()); ok {
			return m, m.jump(to)
		}
		return m, nil
	}
	var cmds []tea.Cmd
	if _, isKey := msg.(tea.KeyPressMsg); !isKey {
		for _, p := range m.pages {
			if r, ok := p.(receiver); ok {
				cmds = append(cmds, r.receive(m, msg))
			}
		}
	}
	if m.dialog != nil {
		cmd, closed := m.dialog.update(m, msg)
		if closed {
			m.dialog = nil
		}
		return m, tea.Batch(append(cmds, cmd)...)
	}
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return m, tea.Batch(cmds...)
	}
	if key.Matches(k, keys.Quit) {
		m.dialog = &quitDialog{}
		return m, nil
	}
	m.status = ""
	if to, ok := stepKey(k, true); ok {
		return m, m.jump(to)
	}
	if k.String() == "f1" {
		m.openHelp()
		return m, nil
	}
	if cmd, handled := m.pages[m.cur].update(m, k); handled {
		return m, cmd
	}
	if to, ok := stepKey(k, false); ok {
		return m, m.jump(to)
	}
	if key.Matches(k, helpKey) {
		m.openHelp()
		return m, nil
	}
	switch {
	case key.Matches(k, keys.NextStep):
		return m, m.next()
	case key.Matches(k, keys.Back):
		return m, m.back()
	}
	return m, nil
}

// paste types pasted text into the focused field, as if typed, one line:
// a line break ends it.
func (m *model) paste(text string) tea.Cmd {
	line, _, _ := strings.Cut(strings.ReplaceAll(text, "\r", "\n"), "\n")
	var cmds []tea.Cmd
	for _, r := range strings.ReplaceAll(line, "\t", " ") {
		_, cmd := m.Update(tea.KeyPressMsg{Code: r, Text: string(r)})
		cmds = append(cmds, cmd)
	}
	return tea.Batch(cmds...)
}

// changed notes a change to the site: it is checked again, and the draft is
// written shortly.
func (m *model) changed() tea.Cmd {
	m.errs = validate(m.site)
	m.version++
	m.dirty = true
	m.draftSeq++
	seq := m.draftSeq
	return m.after(draftDelay, func(time.Time) tea.Msg { return draftTick(seq) })
}

// next goes to the next step, unless the current one has problems: then
// they all show and the focus goes to the first.
func (m *model) next() tea.Cmd {
	p := m.pages[m.cur]
	if probs := p.blocking(m); len(probs) > 0 {
		cmd := p.attempt(m)
		msg := "Fix the marked problems to go on; esc goes back."
		if m.cur == stepReview {
			msg = "The site still has problems: enter goes to the first one."
		}
		m.setStatus(true, msg)
		return cmd
	}
	if m.cur == stepFinish {
		return nil
	}
	return m.goTo(m.cur + 1)
}

// openHelp shows every key of the current screen and the global ones.
func (m *model) openHelp() {
	b := m.pages[m.cur].keys(m)
	if _, ok := m.pages[m.cur].(*formPage); ok {
		b = append(b, keys.Next, keys.Prev)
	}
	m.dialog = helpDialog{screen: b}
}

// stepKey is the step a key jumps to: alt+1 to alt+9 always, 1 to 9 when
// the page has no use for the digit (alt false).
func stepKey(k tea.KeyPressMsg, alt bool) (stepID, bool) {
	s := k.String()
	if alt {
		var ok bool
		if s, ok = strings.CutPrefix(s, "alt+"); !ok {
			return 0, false
		}
	}
	if len(s) != 1 || s[0] < '1' || s[0] > '0'+byte(stepCount) {
		return 0, false
	}
	return stepID(s[0] - '1'), true
}

// stepAt is the step of the step list at a mouse position.
func (m *model) stepAt(mouse tea.Mouse) (stepID, bool) {
	if mouse.Button != tea.MouseLeft || mouse.X >= sideWidth(m.width) {
		return 0, false
	}
	id := stepID(mouse.Y - 2) // the header, then the list's top border
	return id, id >= 0 && id < stepCount
}

// jump goes to step id as far as the steps on the way let it: going back
// is always allowed; going on stops at the first step with problems, as
// Next would.
func (m *model) jump(id stepID) tea.Cmd {
	if id == m.cur {
		return nil
	}
	if id > m.cur {
		for at := m.cur; at < id; at++ {
			p := m.pages[at]
			if probs := p.blocking(m); len(probs) > 0 {
				var cmd tea.Cmd
				if at != m.cur {
					cmd = m.goTo(at)
				}
				m.setStatus(true, fmt.Sprintf("%s first: %s", stepNames[at].long, probs[0]))
				return tea.Batch(cmd, p.attempt(m))
			}
		}
	}
	return m.goTo(id)
}

// back goes to the previous step; going back is always allowed.
func (m *model) back() tea.Cmd {
	if m.cur == stepWelcome {
		m.setStatus(false, "This is the first step; ctrl+c leaves the wizard.")
		return nil
	}
	return m.goTo(m.cur - 1)
}

// goTo shows step id.
func (m *model) goTo(id stepID) tea.Cmd {
	m.cur = id
	m.reached = max(m.reached, id)
	m.sess.refreshRecord()
	if m.dirty {
		m.saveDraft()
	}
	if id >= stepReview {
		return tea.Batch(m.checkUnlock(), m.pages[id].enter(m))
	}
	return m.pages[id].enter(m)
}

func (m *model) setStatus(bad bool, msg string) {
	m.status, m.statusBad = msg, bad
}

// job is what the Finish actions work with, on a copy of the site.
func (m *model) job() Job {
	site := m.site.Clone()
	site.SetDefaults()
	var pass []byte
	if m.sess.passphrase != "" {
		pass = []byte(m.sess.passphrase)
	}
	return Job{Site: site, StateDir: m.sess.stateDir, Passphrase: pass}
}

// saveDraft writes the answers so far into the state folder.
func (m *model) saveDraft() {
	if m.draftAt.dir == "" {
		return
	}
	d := &draft{Saved: m.o.Now().UTC().Truncate(time.Second), Step: int(m.cur), Reached: int(m.reached),
		SitePath: m.sess.sitePath, StateDir: m.sess.stateDir, Site: m.site.Clone()}
	if err := d.save(m.draftAt); err != nil {
		m.draftNote = "draft not saved: " + err.Error()
		return
	}
	m.drafted = true
	m.draftNote = "draft saved " + d.Saved.Local().Format("15:04:05")
}

// start takes site as the site to start from, from source.
func (m *model) start(site *steps.Site, source string) {
	m.site, m.o.Source = site.Clone(), source
	m.errs = validate(m.site)
	m.version++
	m.reloadAll()
}

// resume takes the answers of a draft.
func (m *model) resume(d *draft) tea.Cmd {
	m.site = d.Site.Clone()
	if d.SitePath != "" {
		m.sess.sitePath = d.SitePath
	}
	if d.StateDir != "" {
		m.sess.stateDir = d.StateDir
	}
	m.cur, m.reached = stepID(d.Step), stepID(d.Reached)
	m.errs = validate(m.site)
	m.version++
	m.dirty, m.drafted = true, true
	m.reloadAll()
	m.setStatus(false, fmt.Sprintf("Resumed the draft of %s.", d.Saved.Local().Format("2006-01-02 15:04")))
	return m.pages[m.cur].enter(m)
}

// finish runs when the wizard ends: unsaved answers stay in the draft. It
// returns a line to print after the wizard's screen is gone.
func (m *model) finish() string {
	if !m.dirty {
		if m.saved != "" {
			return "ztwizard: the site is saved in " + m.saved + "."
		}
		return ""
	}
	m.saveDraft()
	if !m.drafted {
		return "ztwizard: " + m.draftNote
	}
	return fmt.Sprintf("ztwizard: your answers are kept in %s; run the wizard again to resume.", m.draftAt.path())
}

// quit leaves the wizard, keeping the answers in the draft.
func (m *model) quit() tea.Cmd {
	if m.dirty {
		m.saveDraft()
	}
	return tea.Quit
}

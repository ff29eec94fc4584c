package tui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"ztwizard/steps"
)

// clock is the fixed time of every test.
var clock = time.Date(2026, 11, 22, 11, 40, 0, 0, time.UTC)

// shownState is the state folder the screens show, whatever the test uses.
const shownState = "/var/lib/ztwizard"

// fakeActions does the Finish step's work in memory, and writes saved
// sites for real so they can be read back.
type fakeActions struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeActions) note(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeActions) Save(site *steps.Site, path string) error {
	f.note("save %s", path)
	data, err := site.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func (f *fakeActions) Render(_ context.Context, _ Job, node, dir string) (string, error) {
	f.note("render %s %s", node, dir)
	return fmt.Sprintf("Wrote node %s into %s: 21 files (21 changed), 12 firewall rules, 1 WireGuard peers.", node, dir), nil
}

func (f *fakeActions) Review(_ context.Context, job Job, node string) (string, error) {
	f.note("review %s", node)
	var b strings.Builder
	fmt.Fprintf(&b, "# Files (3)\n+ /etc/ssh/sshd_config.d/50-ztwizard.conf 0644\n+ /etc/wireguard/zt0.conf 0600\n+ /etc/ztwizard/nftables.nft 0644\n\n")
	fmt.Fprintf(&b, "# Firewall: table inet ztwizard, 12 rules\ntable inet ztwizard {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}\n\n")
	fmt.Fprintf(&b, "# WireGuard zt0 of %s\n", node)
	for _, n := range job.Site.Links(node) {
		fmt.Fprintf(&b, "peer %s\n", n)
	}
	return b.String(), nil
}

func (f *fakeActions) Apply(_ context.Context, _ Job, node string, progress func(string)) (time.Time, error) {
	f.note("apply %s", node)
	return time.Time{}, fmt.Errorf("applying to this host arrives with `ztwizard apply`: %w", ErrNotAvailable)
}

func (f *fakeActions) Unlock(context.Context, Job) error { return nil }

func (f *fakeActions) Keys(_ context.Context, job Job) (string, error) {
	f.note("keys %t", len(job.Passphrase) > 0)
	return "The CA keys are in " + job.StateDir + ".", nil
}

func (f *fakeActions) Confirm(context.Context, Job) error { return nil }

func (f *fakeActions) Bake(_ context.Context, _ Job, node string, _ BakeOptions, _ func(string, int, int)) error {
	f.note("bake %s", node)
	return fmt.Errorf("baking images arrives with `ztwizard bake`: %w", ErrNotAvailable)
}

func (f *fakeActions) Export(_ context.Context, _ Job, what, name, dir string) (Exported, error) {
	f.note("export %s %s", what, name)
	if what == "client" {
		return Exported{Files: []string{filepath.Join(dir, name+".p12")}}, nil
	}
	return Exported{Files: []string{filepath.Join(dir, name+".conf")},
		WireGuard: []byte("[Interface]\nAddress = 10.100.0.1/24\nPrivateKey = oK56DE9Ue9zK76rAc8pBl6opph+1v36lm7cXXsQKrQM=\n")}, nil
}

func (f *fakeActions) Ansible(_ context.Context, _ Job, o AnsibleOptions) (Exported, error) {
	f.note("ansible %s %s %s %s", o.Dir, o.SitePath, o.User, o.Identity)
	if o.User == "a b" {
		return Exported{}, fmt.Errorf("SSH user %q: not an account name (letters, digits, '.', '_', '-')", o.User)
	}
	return Exported{Files: []string{filepath.Join(o.Dir, "inventory.yml"), filepath.Join(o.Dir, "push.yml"),
		filepath.Join(o.Dir, "known_hosts")}}, nil
}

// newTestModel is the wizard on site, its draft in a fresh folder, showing
// shownState as its state folder.
func newTestModel(t testing.TB, site *steps.Site, opts ...func(*Options)) *model {
	t.Helper()
	o := Options{Site: site, SitePath: "site.yaml", Source: "the example site", StateDir: t.TempDir(),
		Actions: &fakeActions{}, Now: func() time.Time { return clock }}
	for _, f := range opts {
		f(&o)
	}
	m := newModel(context.Background(), o)
	m.sess.stateDir = shownState
	m.reloadAll()
	m.Init()
	return m
}

// keyMsgs turns a key name ("tab", "ctrl+n") or text into key presses.
func keyMsgs(k string) []tea.Msg {
	named := map[string]tea.KeyPressMsg{
		"tab": {Code: tea.KeyTab}, "shift+tab": {Code: tea.KeyTab, Mod: tea.ModShift},
		"enter": {Code: tea.KeyEnter}, "esc": {Code: tea.KeyEscape},
		"up": {Code: tea.KeyUp}, "down": {Code: tea.KeyDown}, "left": {Code: tea.KeyLeft}, "right": {Code: tea.KeyRight},
		"space": {Code: tea.KeySpace, Text: " "}, "backspace": {Code: tea.KeyBackspace},
		"pgdown": {Code: tea.KeyPgDown}, "pgup": {Code: tea.KeyPgUp},
		"f1": {Code: tea.KeyF1},
	}
	if k, ok := named[k]; ok {
		return []tea.Msg{k}
	}
	if c, ok := strings.CutPrefix(k, "ctrl+"); ok && len(c) == 1 {
		return []tea.Msg{tea.KeyPressMsg{Code: rune(c[0]), Mod: tea.ModCtrl}}
	}
	if c, ok := strings.CutPrefix(k, "alt+"); ok && len(c) == 1 {
		return []tea.Msg{tea.KeyPressMsg{Code: rune(c[0]), Mod: tea.ModAlt}}
	}
	var out []tea.Msg
	for _, r := range k {
		out = append(out, tea.KeyPressMsg{Code: r, Text: string(r)})
	}
	return out
}

// press sends keys straight to the model, running what they start until
// it settles, for tests that look at the model. It turns timers off.
func press(m *model, ks ...string) {
	m.after = func(time.Duration, func(time.Time) tea.Msg) tea.Cmd { return nil }
	for _, k := range ks {
		for _, msg := range keyMsgs(k) {
			_, cmd := m.Update(msg)
			settle(m, cmd, 0)
		}
	}
}

// settle runs cmd and feeds its messages back, depth-first.
func settle(m *model, cmd tea.Cmd, depth int) {
	if cmd == nil || depth > 8 {
		return
	}
	done := make(chan tea.Msg, 1)
	go func() { done <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-done:
	case <-time.After(5 * time.Second):
		panic("a command did not finish")
	}
	switch msg := msg.(type) {
	case nil, tea.QuitMsg:
		return
	case tea.BatchMsg:
		for _, c := range msg {
			settle(m, c, depth+1)
		}
		return
	case draftTick:
		return
	default:
		_, next := m.Update(msg)
		settle(m, next, depth+1)
	}
}

// screen is the model drawn at its size, colours stripped, trailing
// blanks cut: what a terminal shows.
func screen(m *model) string {
	lines := strings.Split(ansi.Strip(m.render()), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

// drive runs the wizard as a real bubbletea program at width x height
// with a fixed colour profile (teatest), types keys, and returns the model
// when the program has ended. until, if set, is waited for in the output
// before the program is told to quit.
func drive(t *testing.T, m *model, width, height int, until string, ks ...string) *model {
	t.Helper()
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(width, height),
		teatest.WithProgramOptions(tea.WithColorProfile(colorprofile.ANSI256)))
	for _, k := range ks {
		for _, msg := range keyMsgs(k) {
			tm.Send(msg)
		}
	}
	if until != "" {
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return strings.Contains(ansi.Strip(string(b)), until) },
			teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(20*time.Millisecond))
	}
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	return tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*model)
}

package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// workingActions applies and bakes for real, as the applier and the baker
// will: progress, then a rollback deadline.
type workingActions struct {
	fakeActions
	confirmed bool
}

func (w *workingActions) Apply(_ context.Context, _ Job, node string, progress func(string)) (time.Time, error) {
	for _, s := range []string{"firewall: table inet ztwizard replaced", "sshd: reloaded", "WireGuard: zt0 up with 1 peer"} {
		progress(s)
	}
	return clock.Add(2 * time.Minute), nil
}

func (w *workingActions) Confirm(context.Context, Job) error { w.confirmed = true; return nil }

func (w *workingActions) Bake(_ context.Context, _ Job, _ string, _ BakeOptions, progress func(string, int, int)) error {
	progress("rootfs", 1, 4)
	progress("plan files", 2, 4)
	progress("disk", 3, 4)
	progress("qcow2", 4, 4)
	return nil
}

// TestApplyAsksShowsStepsAndConfirms applies only once the node is named,
// shows each step, counts down to the rollback and confirms with c.
func TestApplyAsksShowsStepsAndConfirms(t *testing.T) {
	a := &workingActions{}
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = a })
	press(m, "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "down", "down", "down", "down", "down", "enter", "tab", "enter")
	if !strings.Contains(screen(m), "This changes THIS machine") {
		t.Fatalf("apply does not ask first:\n%s", screen(m))
	}
	press(m, "y", "enter")
	if d, ok := m.dialog.(*applyDialog); !ok || d.state != applyAsk || !strings.Contains(screen(m), "✗ that is not db") {
		t.Fatalf("y applies:\n%s", screen(m))
	}
	press(m, "esc")
	if m.dialog != nil {
		t.Fatal("esc does not cancel")
	}
	press(m, "enter", "db", "enter")
	scr := screen(m)
	for _, want := range []string{"✓ firewall: table inet ztwizard replaced", "✓ WireGuard: zt0 up with 1 peer", "Confirm within 2:00", "c confirm"} {
		if !strings.Contains(scr, want) {
			t.Errorf("apply screen lacks %q:\n%s", want, scr)
		}
	}
	press(m, "c")
	if !a.confirmed || !strings.Contains(screen(m), "Confirmed: the changes stay.") {
		t.Fatalf("c did not confirm:\n%s", screen(m))
	}
}

// TestApplyTimesOut says so when the countdown runs out unconfirmed.
func TestApplyTimesOut(t *testing.T) {
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = &workingActions{} })
	press(m, nexts(8)...)
	press(m, "down", "down", "down", "down", "down", "enter", "tab", "enter", "db", "enter")
	m.o.Now = func() time.Time { return clock.Add(3 * time.Minute) }
	m.Update(applyTickMsg{})
	if !strings.Contains(screen(m), "Not confirmed in time") {
		t.Fatalf("no word of the rollback:\n%s", screen(m))
	}
}

// TestBakeShowsProgress draws the bake's stages and its bar.
func TestBakeShowsProgress(t *testing.T) {
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = &workingActions{} })
	press(m, nexts(8)...)
	press(m, "down", "down", "enter", "right", "tab", "tab", "enter", "enter", "enter", "enter", "enter", "enter")
	scr := screen(m)
	for _, want := range []string{"Bake a golden image", "✓ rootfs", "✓ qcow2", "100%", "Baked oslo-prod-golden.qcow2."} {
		if !strings.Contains(scr, want) {
			t.Errorf("bake screen lacks %q:\n%s", want, scr)
		}
	}
}

// TestFinishSavesRendersExports saves the site (the draft goes), writes a
// bundle and exports a client.
func TestFinishSavesRendersExports(t *testing.T) {
	dir := t.TempDir()
	a := &fakeActions{}
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = a; o.StateDir = dir; o.SitePath = filepath.Join(dir, "site.yaml") })
	press(m, "ctrl+n", "ctrl+u", "lab", "ctrl+n")
	if _, err := os.Stat(filepath.Join(dir, DraftFile(filepath.Join(dir, "site.yaml")))); err != nil {
		t.Fatalf("no draft after a change and a step: %v", err)
	}
	press(m, nexts(7)...)
	press(m, "enter", "enter", "enter")
	if _, err := steps.Load(filepath.Join(dir, "site.yaml")); err != nil {
		t.Fatalf("saved site: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DraftFile(filepath.Join(dir, "site.yaml")))); !os.IsNotExist(err) {
		t.Fatal("the draft is left after saving")
	}
	press(m, "down", "enter", "right", "tab", "enter", "enter")
	press(m, "esc", "down", "down", "enter", "left", "tab", "enter", "enter")
	scr := screen(m)
	if !strings.Contains(scr, "Exported client service-worker-01") {
		t.Fatalf("no export:\n%s\n%v", scr, a.calls)
	}
	press(m, "esc", "esc")
	want := []string{"review db", "review web", "save " + filepath.Join(dir, "site.yaml"), "render web ./web", "export client service-worker-01"}
	if strings.Join(a.calls, "\n") != strings.Join(want, "\n") {
		t.Fatalf("actions %q, want %q", a.calls, want)
	}
	if !strings.Contains(screen(m), "✓ Wrote node web into ./web") {
		t.Fatalf("render result not shown:\n%s", screen(m))
	}
}

// failingReview fails the review of one node, as a plan that cannot be
// built for it.
type failingReview struct {
	fakeActions
	node string
}

func (f *failingReview) Review(ctx context.Context, job Job, node string) (string, error) {
	if node == f.node {
		return "", errors.New("wireguard: web: no key")
	}
	return f.fakeActions.Review(ctx, job, node)
}

// TestReviewNodeProblem fails one node's review: the other node's review
// is there, the failing node is marked as having the problem, the step
// list marks Review, and Finish does not call the site fine.
func TestReviewNodeProblem(t *testing.T) {
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = &failingReview{node: "web"} })
	press(m, nexts(7)...)
	scr := screen(m)
	for _, want := range []string{"# Files (3)", "✗ web"} {
		if !strings.Contains(scr, want) {
			t.Errorf("review lacks %q:\n%s", want, scr)
		}
	}
	press(m, "right")
	if scr := screen(m); !strings.Contains(scr, "✗ The plan of node web fails:") || !strings.Contains(scr, "wireguard: web: no") {
		t.Errorf("web's problem is not shown as web's:\n%s", scr)
	}
	press(m, "ctrl+n")
	if scr := screen(m); !strings.Contains(scr, "the plan of 1 node fails") || !strings.Contains(scr, "✗ 8") || strings.Contains(scr, "The site is valid. Save") {
		t.Errorf("Finish calls the site fine:\n%s", scr)
	}
}

// hubSite is a site where two nodes link to gate and gate names none.
func hubSite() *steps.Site {
	s := steps.Example()
	s.Nodes = []steps.Node{
		{Name: "gate", Endpoint: "192.168.1.10:51820"},
		{Name: "store", Endpoint: "192.168.1.100:51820", Peers: []string{"gate"}},
		{Name: "runner", Peers: []string{"gate"}, Keepalive: 25},
	}
	s.Services[0].Node = "store"
	s.Databases[0].Node = "store"
	s.Databases[0].Clients = []string{"runner"}
	return s
}

// TestLinksBothWays shows gate's links set on store and runner: in the
// list, in gate's editor and in the plain prompts' summary; unticking one
// in gate's editor removes it on the other side.
func TestLinksBothWays(t *testing.T) {
	m := newTestModel(t, hubSite())
	m.width, m.height = 120, 40
	press(m, "ctrl+n", "ctrl+n")
	if scr := screen(m); !strings.Contains(scr, "↔ store runner") || strings.Contains(scr, "no peers") {
		t.Fatalf("gate's row does not show its links:\n%s", scr)
	}
	press(m, "tab", "tab", "enter", "tab", "tab", "tab")
	if scr := screen(m); !strings.Contains(scr, "[x] store") || !strings.Contains(scr, "[x] runner") {
		t.Fatalf("gate's editor does not tick its links:\n%s", scr)
	}
	press(m, "space")
	if len(m.site.Nodes[1].Peers) != 0 {
		t.Fatalf("unticking store on gate left store's link: %v", m.site.Nodes[1].Peers)
	}
	if scr := screen(m); !strings.Contains(scr, "[ ] store") {
		t.Fatalf("store is still ticked:\n%s", scr)
	}
	if o := overview(hubSite(), nil); !strings.Contains(o, "gate         10.100.0.1      peers store, runner") {
		t.Fatalf("the summary shows links one way:\n%s", o)
	}
}

// TestRemoveNodeSaysWhatBreaks asks before removing node store and says
// that a service and a database sit on it and which links go.
func TestRemoveNodeSaysWhatBreaks(t *testing.T) {
	m := newTestModel(t, hubSite())
	m.width, m.height = 120, 40
	press(m, "ctrl+n", "ctrl+n", "tab", "tab", "down", "x")
	scr := screen(m)
	for _, want := range []string{"Remove node store? Then service api runs on it and needs another node (mTLS services);",
		"database main runs on it and needs another node (Databases)", "its links to gate go (WireGuard mesh)", "y removes"} {
		if !strings.Contains(strings.Join(strings.Fields(strings.ReplaceAll(scr, "│", "")), " "), want) {
			t.Errorf("the question lacks %q:\n%s", want, scr)
		}
	}
}

// TestFinishAfterSave saves after a failed save: the failure leaves the
// log, and Finish no longer asks to save.
func TestFinishAfterSave(t *testing.T) {
	dir := t.TempDir()
	m := newTestModel(t, steps.Example(), func(o *Options) {
		o.StateDir = dir
		o.SitePath = filepath.Join(dir, "missing", "site.yaml")
	})
	press(m, "ctrl+n", "ctrl+u", "lab")
	press(m, nexts(7)...)
	press(m, "enter", "enter", "enter")
	if scr := screen(m); !strings.Contains(scr, "✗ ") {
		t.Fatalf("the save into a missing folder did not fail:\n%s", scr)
	}
	press(m, "shift+tab", "ctrl+u", filepath.Join(dir, "site.yaml"), "enter", "enter")
	scr := screen(m)
	if strings.Contains(scr, "✗ ") || !strings.Contains(scr, "✓ Saved") {
		t.Fatalf("the fixed failure stays in the log:\n%s", scr)
	}
	if strings.Contains(scr, "Save it") || !strings.Contains(scr, "The site is valid and saved in") {
		t.Fatalf("Finish still asks to save:\n%s", scr)
	}
}

// lockedActions has CA keys encrypted with "pw".
type lockedActions struct{ fakeActions }

func (l *lockedActions) Unlock(_ context.Context, job Job) error {
	switch string(job.Passphrase) {
	case "pw":
		return nil
	case "":
		return fmt.Errorf("%w: the CA key in /var/lib/ztwizard is encrypted; type its passphrase", ErrLocked)
	}
	return fmt.Errorf("%w: wrong passphrase for the CA key in /var/lib/ztwizard", ErrLocked)
}

// TestUnlockAsksPassphrase reaches Review with encrypted CA keys and no
// passphrase: the wizard asks for it, refuses a wrong one and goes on with
// the right one.
func TestUnlockAsksPassphrase(t *testing.T) {
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = &lockedActions{} })
	press(m, nexts(7)...)
	if _, ok := m.dialog.(*unlockDialog); !ok || !strings.Contains(screen(m), "Unlock the CA") {
		t.Fatalf("no passphrase asked:\n%s", screen(m))
	}
	press(m, "bad", "enter")
	if scr := screen(m); !strings.Contains(scr, "Wrong passphrase") || strings.Contains(scr, "bad") {
		t.Fatalf("a wrong passphrase:\n%s", scr)
	}
	press(m, "backspace", "backspace", "backspace", "pw", "enter")
	if m.dialog != nil || m.sess.passphrase != "pw" || !strings.Contains(screen(m), "The CA keys are unlocked.") {
		t.Fatalf("the right passphrase does not unlock:\n%s", screen(m))
	}
	press(m, "ctrl+n")
	if m.dialog != nil {
		t.Fatal("asked again once unlocked")
	}
}

// TestPassphraseConfirmed types a new passphrase twice on Welcome: two
// that differ keep Next on the step.
func TestPassphraseConfirmed(t *testing.T) {
	m := newTestModel(t, steps.Example())
	press(m, "tab", "tab", "secret", "tab", "secreT", "ctrl+n")
	if m.cur != stepWelcome || !strings.Contains(screen(m), "the two passphrases differ") {
		t.Fatalf("differing passphrases pass:\n%s", screen(m))
	}
	press(m, "backspace", "T", "ctrl+n")
	if m.cur != stepWelcome {
		t.Fatal("still refused")
	}
	press(m, "backspace", "t", "ctrl+n")
	if m.cur != stepCA {
		t.Fatalf("the same passphrase twice is refused:\n%s", screen(m))
	}
}

// TestJumpToStep jumps with alt+digit, with a digit where no field takes
// it, and with a click in the step list; a jump ahead stops at a step with
// problems, as Next does.
func TestJumpToStep(t *testing.T) {
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Loaded = true })
	press(m, "3")
	if m.cur != stepWelcome || m.site.Site != "oslo-prod3" {
		t.Fatalf("a digit in a text field did not type: at %s, site %q", stepNames[m.cur].long, m.site.Site)
	}
	press(m, "backspace", "alt+5")
	if m.cur != stepSSH {
		t.Fatalf("alt+5: at %s", stepNames[m.cur].long)
	}
	press(m, "alt+9", "2")
	if m.cur != stepCA {
		t.Fatalf("2 on Finish: at %s", stepNames[m.cur].long)
	}
	m.Update(tea.MouseClickMsg{X: 4, Y: 2 + int(stepFirewall), Button: tea.MouseLeft})
	if m.cur != stepFirewall {
		t.Fatalf("click on Firewall: at %s", stepNames[m.cur].long)
	}

	bad := steps.Example()
	bad.Nodes[1].Address = "10.200.0.9"
	m = newTestModel(t, bad, func(o *Options) { o.Loaded = true })
	press(m, "alt+9")
	if m.cur != stepMesh || !strings.Contains(screen(m), "WireGuard mesh and nodes first") {
		t.Fatalf("a jump past problems: at %s\n%s", stepNames[m.cur].long, screen(m))
	}
}

// TestFullHelp opens the full help with ? where no field takes it and with
// F1 anywhere; in a text field ? is typed.
func TestFullHelp(t *testing.T) {
	m := newTestModel(t, steps.Example())
	press(m, "?")
	if m.dialog != nil || m.site.Site != "oslo-prod?" {
		t.Fatalf("? in a text field: %q", m.site.Site)
	}
	press(m, "backspace", "alt+8", "?")
	if _, ok := m.dialog.(helpDialog); !ok {
		t.Fatalf("? on Review shows no help:\n%s", screen(m))
	}
	scr := screen(m)
	for _, want := range []string{"On this screen", "←/→", "alt+1 … alt+9", "1 Welcome", "9 Finish"} {
		if !strings.Contains(scr, want) {
			t.Errorf("help lacks %q:\n%s", want, scr)
		}
	}
	press(m, "esc")
	if m.dialog != nil {
		t.Fatal("esc does not close the help")
	}
}

// slowBake bakes until it is cancelled.
type slowBake struct {
	fakeActions
	got BakeOptions
}

func (s *slowBake) Bake(ctx context.Context, _ Job, _ string, o BakeOptions, progress func(string, int, int)) error {
	s.got = o
	progress("rootfs", 0, 4)
	<-ctx.Done()
	return ctx.Err()
}

// TestBakeCancel bakes with the form's network and disk choices and
// cancels with esc: the bake stops and says nothing was written.
func TestBakeCancel(t *testing.T) {
	a := &slowBake{}
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = a })
	press(m, nexts(8)...)
	press(m, "down", "down", "enter", "tab", "tab", "tab", "3G", "tab", "192.168.1.100/24", "tab", "192.168.1.1", "tab", "192.168.1.1 9.9.9.9", "tab")
	m.Update(tea.KeyPressMsg{Code: tea.KeyEnter})
	d, ok := m.dialog.(*bakeDialog)
	if !ok {
		t.Fatalf("no bake:\n%s", screen(m))
	}
	m.Update(<-d.ch)
	if !strings.Contains(screen(m), "rootfs") || !strings.Contains(screen(m), "esc cancel the bake") {
		t.Fatalf("no bake under way:\n%s", screen(m))
	}
	m.Update(tea.KeyPressMsg{Code: tea.KeyEscape})
	if !strings.Contains(screen(m), "Cancelling…") {
		t.Fatalf("esc does not cancel:\n%s", screen(m))
	}
	select {
	case msg := <-d.ch:
		m.Update(msg)
	case <-time.After(5 * time.Second):
		t.Fatal("the bake did not stop")
	}
	if !strings.Contains(screen(m), "Cancelled: no image was written.") || !strings.Contains(finishLog(m), "bake of db.qcow2 cancelled") {
		t.Fatalf("no word of the cancel:\n%s", screen(m))
	}
	want := BakeOptions{Out: "db.qcow2", Size: "3G", Address: "192.168.1.100/24", Gateway: "192.168.1.1", DNS: []string{"192.168.1.1", "9.9.9.9"}}
	if !reflect.DeepEqual(a.got, want) {
		t.Fatalf("bake options %+v, want %+v", a.got, want)
	}
}

// TestSaveMakesEncryptedKeys saves a site after a passphrase was typed:
// the CA keys are made with it, so it is not lost with the wizard.
func TestSaveMakesEncryptedKeys(t *testing.T) {
	dir := t.TempDir()
	a := &fakeActions{}
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = a; o.StateDir = dir; o.SitePath = filepath.Join(dir, "site.yaml") })
	press(m, "tab", "tab", "pw-1", "tab", "pw-1")
	press(m, "alt+9", "enter", "enter", "enter")
	if !strings.Contains(strings.Join(a.calls, " "), "keys true") || !strings.Contains(screen(m), "✓ The CA keys are in") {
		t.Fatalf("no keys made after the save: %v\n%s", a.calls, screen(m))
	}
}

// finishLog is the Finish log as text.
func finishLog(m *model) string {
	var lines []string
	for _, r := range m.pages[stepFinish].(*finishPage).results {
		lines = append(lines, r.line)
	}
	return strings.Join(lines, "\n")
}

// TestFinishAnsible writes the Ansible push: refused until the site is
// saved (the playbook reads the file), then with the saved file, the
// defaults and ~ made the home folder; a refused option shows beside the
// form and goes once fixed.
func TestFinishAnsible(t *testing.T) {
	dir := t.TempDir()
	a := &fakeActions{}
	site := filepath.Join(dir, "site.yaml")
	m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = a; o.StateDir = dir; o.SitePath = site })
	press(m, nexts(8)...)
	press(m, "down", "down", "down", "down", "enter", "tab", "tab", "tab", "enter")
	if scr := screen(m); !strings.Contains(scr, "Finish › Write the Ansible push") || !strings.Contains(scr, "✗ save the site first") ||
		!strings.Contains(finishLog(m), "✗ save the site first: the playbook reads it from "+site) {
		t.Fatalf("an unsaved site is not refused beside the form:\n%s", scr)
	}
	press(m, "esc", "up", "up", "up", "up", "enter", "enter", "enter")
	press(m, "down", "down", "down", "down", "enter", "tab", "a b", "tab", "~/.ssh/admin", "tab", "enter")
	if scr := screen(m); !strings.Contains(scr, `✗ SSH user "a b": not an account name`) {
		t.Fatalf("a bad user is not shown beside the form:\n%s", scr)
	}
	press(m, "shift+tab", "shift+tab", "ctrl+u", "tab", "tab", "enter")
	scr := screen(m)
	if !strings.Contains(scr, "Wrote the Ansible push") || !strings.Contains(scr, "Push every node with:") ||
		!strings.Contains(scr, "ansible-playbook -i push/inventory.yml push/push.yml") {
		t.Fatalf("no account of the push:\n%s", scr)
	}
	press(m, "esc")
	if log := finishLog(m); strings.Contains(log, "✗") || !strings.Contains(log, "✓ Wrote the Ansible push: push/inventory.yml, push/push.yml, push/known_hosts") {
		t.Fatalf("the Finish log:\n%s", log)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	want := "ansible ./push " + site + "  " + filepath.Join(home, ".ssh/admin")
	if got := a.calls[len(a.calls)-1]; got != want {
		t.Fatalf("last action %q, want %q (all: %q)", got, want, a.calls)
	}
}

package tui

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"ztwizard/steps"
)

// TestDraftResumesEveryAnswer answers half the wizard from an empty start,
// leaves with ctrl+c, and starts again: the draft is offered and brings
// back every answer and the step.
func TestDraftResumesEveryAnswer(t *testing.T) {
	dir := t.TempDir()
	m := newTestModel(t, Empty(), func(o *Options) { o.StateDir = dir })
	press(m, "oslo-prod", "ctrl+n",
		"Internal Root CA", "tab", "MyOrg", "tab", "NO", "tab", "right", "ctrl+n",
		"10.100.0.0/24", "tab", "tab", "enter", "db", "tab", "192.168.1.100:51820", "tab", "10.100.0.1", "ctrl+s",
		"a", "web", "tab", "tab", "tab", "space", "tab", "25")
	if m.cur != stepMesh || m.pages[stepMesh].(*formPage).form.capture() == nil {
		t.Fatalf("not editing node web on the mesh step:\n%s", screen(m))
	}
	m.width = 200
	press(m, "ctrl+c")
	if _, ok := m.dialog.(*quitDialog); !ok {
		t.Fatal("ctrl+c does not ask before quitting")
	}
	if !strings.Contains(screen(m), filepath.Join(dir, DraftFile("site.yaml"))) {
		t.Fatalf("the question does not say where the draft is:\n%s", screen(m))
	}
	press(m, "y")
	fi, err := os.Stat(filepath.Join(dir, DraftFile("site.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("draft mode %o, want 0600", fi.Mode().Perm())
	}
	if data, _ := os.ReadFile(filepath.Join(dir, DraftFile("site.yaml"))); strings.Contains(string(data), "passphrase") {
		t.Fatalf("the draft holds a passphrase:\n%s", data)
	}

	again := newTestModel(t, Empty(), func(o *Options) { o.StateDir = dir })
	if _, ok := again.dialog.(*draftDialog); !ok {
		t.Fatalf("the draft is not offered:\n%s", screen(again))
	}
	press(again, "y")
	if !reflect.DeepEqual(again.site, m.site) {
		t.Fatalf("resumed site differs:\n got %+v\nwant %+v", again.site, m.site)
	}
	if again.cur != stepMesh || again.reached != m.reached {
		t.Fatalf("resumed at %s (reached %d), want %s (reached %d)", stepNames[again.cur].long, again.reached, stepNames[stepMesh].long, m.reached)
	}
	scr := screen(again)
	for _, want := range []string{"db   10.100.0.1  192.168.1.100:51820", "web  10.100.0.2  dials out            ↔ db", "Mesh network 10.100.0.0/24"} {
		if !strings.Contains(scr, want) {
			t.Errorf("resumed screen lacks %q:\n%s", want, scr)
		}
	}
	if again.site.Nodes[1].Keepalive != 25 || again.site.CA.Key != "ecdsa-p384" || again.site.CA.Subject.Country != "NO" {
		t.Fatalf("CA answers lost: %+v", again.site.CA)
	}
}

// TestDraftStartOver drops the draft when the admin starts over.
func TestDraftStartOver(t *testing.T) {
	dir := t.TempDir()
	m := newTestModel(t, Empty(), func(o *Options) { o.StateDir = dir })
	press(m, "scratch", "ctrl+c", "y")
	again := newTestModel(t, Empty(), func(o *Options) { o.StateDir = dir })
	press(again, "n")
	if again.site.Site != "" {
		t.Fatalf("starting over kept %q", again.site.Site)
	}
	if _, err := os.Stat(filepath.Join(dir, DraftFile("site.yaml"))); !os.IsNotExist(err) {
		t.Fatalf("the draft is still there: %v", err)
	}
}

// TestDraftSavedAsYouGo writes the draft shortly after a change, without
// leaving, and removes it once the site is saved.
func TestDraftSavedAsYouGo(t *testing.T) {
	dir := t.TempDir()
	m := newTestModel(t, Empty(), func(o *Options) { o.StateDir = dir; o.SitePath = filepath.Join(dir, "site.yaml") })
	press(m, "lab")
	if _, err := os.Stat(filepath.Join(dir, DraftFile(filepath.Join(dir, "site.yaml")))); !os.IsNotExist(err) {
		t.Fatal("the draft was written before its delay")
	}
	m.Update(draftTick(m.draftSeq))
	d, err := loadDraft(draftFor(dir, filepath.Join(dir, "site.yaml")))
	if err != nil || d == nil || d.Site.Site != "lab" {
		t.Fatalf("draft after the delay: %+v, %v", d, err)
	}
	if !strings.Contains(screen(m), "draft saved") {
		t.Fatalf("the header does not say the draft is saved:\n%s", screen(m))
	}
}

// TestStartAsks starts with no site file: the wizard asks for an empty
// site or the example, and takes the answer.
func TestStartAsks(t *testing.T) {
	for _, tt := range []struct{ key, site string }{{"e", ""}, {"enter", "oslo-prod"}, {"x", "oslo-prod"}} {
		m := newTestModel(t, steps.Example(), func(o *Options) { o.askStart = true })
		if _, ok := m.dialog.(startDialog); !ok || !strings.Contains(screen(m), "There is no site.yaml yet") {
			t.Fatalf("no question at start:\n%s", screen(m))
		}
		press(m, tt.key)
		if m.dialog != nil || m.site.Site != tt.site {
			t.Fatalf("%s: site %q, want %q", tt.key, m.site.Site, tt.site)
		}
	}
}

package tui

import (
	"bytes"
	"fmt"
	"image/color"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/exp/golden"

	"ztwizard/steps"
)

// Golden screens: go test ./tui -update rewrites testdata/*.golden.

// TestGoldenSteps draws every step of the example site at 80x24.
func TestGoldenSteps(t *testing.T) {
	names := []string{"1-welcome", "2-ca", "3-mesh", "4-mtls", "5-ssh", "6-firewall", "7-databases", "8-review", "9-finish"}
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			var ks []string
			for range i {
				ks = append(ks, "ctrl+n")
			}
			until := ""
			if stepID(i) == stepReview {
				until = "# Files (3)"
			}
			m := drive(t, newTestModel(t, steps.Example()), 80, 24, until, ks...)
			if m.cur != stepID(i) {
				t.Fatalf("at step %s, want %s", stepNames[m.cur].long, stepNames[i].long)
			}
			golden.RequireEqual(t, screen(m))
		})
	}
}

// TestGoldenStepsLarge draws every step of the example site at 120x40,
// where the step list is shown in full.
func TestGoldenStepsLarge(t *testing.T) {
	names := []string{"1-welcome", "2-ca", "3-mesh", "4-mtls", "5-ssh", "6-firewall", "7-databases", "9-finish"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			id := stepID(name[0] - '1')
			m := drive(t, newTestModel(t, steps.Example()), 120, 40, "", nexts(int(id))...)
			if m.cur != id {
				t.Fatalf("at step %s, want %s", stepNames[m.cur].long, stepNames[id].long)
			}
			golden.RequireEqual(t, screen(m))
		})
	}
}

// TestGoldenReviewLarge draws the review step in a 120x40 window.
func TestGoldenReviewLarge(t *testing.T) {
	m := drive(t, newTestModel(t, steps.Example()), 120, 40, "peer web",
		"ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n")
	golden.RequireEqual(t, screen(m))
}

// TestGoldenScreens draws the other screens: editors, dialogs, problems,
// an empty start and a narrow window.
func TestGoldenScreens(t *testing.T) {
	bad := steps.Example()
	bad.Nodes[1].Address = "10.200.0.9"
	bad.Firewall.PublicTCP = []int{80}
	tests := []struct {
		name          string
		site          *steps.Site
		width, height int
		until         string
		keys          []string
	}{
		{"node-editor", steps.Example(), 80, 24, "", []string{"ctrl+n", "ctrl+n", "tab", "tab", "down", "enter", "tab", "tab", "tab"}},
		{"new-service", steps.Example(), 80, 24, "", []string{"ctrl+n", "ctrl+n", "ctrl+n", "tab", "down", "enter", "tab", "right", "tab", "tab"}},
		{"quit", steps.Example(), 80, 24, "", []string{"ctrl+n", "ctrl+c"}},
		{"empty-welcome", Empty(), 80, 24, "", nil},
		{"narrow", steps.Example(), 60, 20, "", []string{"ctrl+n", "ctrl+n"}},
		{"blocked-next", bad, 80, 24, "", []string{"ctrl+n", "ctrl+n", "ctrl+n"}},
		{"review-problems", bad, 80, 24, "", nil},
		{"links-80x24", hubSite(), 80, 24, "", []string{"ctrl+n", "ctrl+n", "tab", "tab", "enter", "tab", "tab", "tab"}},
		{"links-120x40", hubSite(), 120, 40, "", []string{"ctrl+n", "ctrl+n"}},
		{"remove-node-80x24", hubSite(), 80, 24, "", []string{"ctrl+n", "ctrl+n", "tab", "tab", "down", "x"}},
		{"remove-node-120x40", hubSite(), 120, 40, "", []string{"ctrl+n", "ctrl+n", "tab", "tab", "down", "x"}},
		{"finish-save", steps.Example(), 80, 24, "", append(nexts(8), "enter")},
		{"bake-form-80x24", steps.Example(), 80, 24, "", append(nexts(8), "down", "down", "enter")},
		{"bake-form-120x40", steps.Example(), 120, 40, "", append(nexts(8), "down", "down", "enter")},
		{"finish-apply", steps.Example(), 80, 24, "Applying to this host arrives", append(nexts(8), "down", "down", "down", "down", "down", "enter", "tab", "enter", "db", "enter")},
		{"finish-apply-ask-80x24", steps.Example(), 80, 24, "", append(nexts(8), "down", "down", "down", "down", "down", "enter", "tab", "enter", "dv", "enter")},
		{"finish-apply-ask-120x40", steps.Example(), 120, 40, "", append(nexts(8), "down", "down", "down", "down", "down", "enter", "tab", "enter", "dv", "enter")},
		{"finish-bake", steps.Example(), 80, 24, "Baking images arrives", append(nexts(8), "down", "down", "enter", "tab", "tab", "tab", "tab", "tab", "tab", "tab", "enter")},
		{"finish-export", steps.Example(), 80, 40, "Scan it with", append(nexts(8), "down", "down", "down", "enter", "tab", "tab", "enter")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, tt.site, func(o *Options) { o.Loaded = tt.site == bad })
			if tt.name == "review-problems" {
				m.goTo(stepReview)
			}
			m = drive(t, m, tt.width, tt.height, tt.until, tt.keys...)
			golden.RequireEqual(t, screen(m))
		})
	}
}

func nexts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "ctrl+n"
	}
	return out
}

// TestGoldenDraftOffer draws the offer of a draft at start.
func TestGoldenDraftOffer(t *testing.T) {
	dir := t.TempDir()
	m := newTestModel(t, steps.Example(), func(o *Options) { o.StateDir = dir })
	press(m, "ctrl+n", "ctrl+n", "ctrl+u", "10.9.0.0/16", "ctrl+c", "y")
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			m := newTestModel(t, Empty(), func(o *Options) { o.StateDir = dir })
			m.draftAt.dir = "/var/lib/ztwizard"
			golden.RequireEqual(t, screen(drive(t, m, size[0], size[1], "")))
		})
	}
}

// TestGoldenTheme draws the first step with colours, on a dark and on a
// light terminal, in the 256-colour profile.
func TestGoldenTheme(t *testing.T) {
	for _, bg := range []struct {
		name string
		c    color.Color
	}{{"dark", color.Black}, {"light", color.White}} {
		t.Run(bg.name, func(t *testing.T) {
			m := newTestModel(t, steps.Example())
			m.Update(tea.BackgroundColorMsg{Color: bg.c})
			var b bytes.Buffer
			w := &colorprofile.Writer{Forward: &b, Profile: colorprofile.ANSI256}
			if _, err := w.Write([]byte(m.render())); err != nil {
				t.Fatal(err)
			}
			golden.RequireEqual(t, strings.ReplaceAll(b.String(), "\r\n", "\n"))
		})
	}
}

// TestGoldenUnlock draws the question for the passphrase of encrypted CA
// keys.
func TestGoldenUnlock(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			m := newTestModel(t, steps.Example(), func(o *Options) { o.Actions = &lockedActions{} })
			golden.RequireEqual(t, screen(drive(t, m, size[0], size[1], "Passphrase: ", nexts(7)...)))
		})
	}
}

// TestGoldenStart draws the question when there is no site file yet.
func TestGoldenStart(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			m := newTestModel(t, steps.Example(), func(o *Options) { o.askStart = true })
			golden.RequireEqual(t, screen(drive(t, m, size[0], size[1], "")))
		})
	}
}

// TestGoldenHelp draws the full help on the mesh step.
func TestGoldenHelp(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			m := newTestModel(t, steps.Example())
			golden.RequireEqual(t, screen(drive(t, m, size[0], size[1], "", "ctrl+n", "ctrl+n", "tab", "tab", "f1")))
		})
	}
}

// TestGoldenAnsible draws the Ansible push's form and what it wrote, with
// the command to run next.
func TestGoldenAnsible(t *testing.T) {
	open := append(nexts(8), "down", "down", "down", "down", "enter")
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		for _, c := range []struct {
			name, until string
			keys        []string
		}{
			{"form", "", open},
			{"result", "Push every node with", append(open, "tab", "tab", "tab", "enter")},
		} {
			t.Run(fmt.Sprintf("%s-%dx%d", c.name, size[0], size[1]), func(t *testing.T) {
				m := newTestModel(t, steps.Example(), func(o *Options) { o.Loaded = true })
				golden.RequireEqual(t, screen(drive(t, m, size[0], size[1], c.until, c.keys...)))
			})
		}
	}
}

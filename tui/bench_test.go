package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// BenchmarkFirstFrame is the wizard's start up to its first frame: the
// model built on the example site (every step, a first validation, the
// draft looked for) and drawn at 80x24.
func BenchmarkFirstFrame(b *testing.B) {
	dir := b.TempDir()
	site := steps.Example()
	b.ReportAllocs()
	for b.Loop() {
		m := newModel(context.Background(), Options{Site: site, StateDir: dir, Actions: &fakeActions{}})
		m.Init()
		m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
		if v := m.View(); v.Content == "" {
			b.Fatal("empty frame")
		}
	}
}

// BenchmarkKeystroke is one key typed into a field: the site checked again
// and the screen drawn.
func BenchmarkKeystroke(b *testing.B) {
	m := newModel(context.Background(), Options{Site: steps.Example(), StateDir: b.TempDir(), Actions: &fakeActions{}})
	m.Init()
	m.after = func(time.Duration, func(time.Time) tea.Msg) tea.Cmd { return nil }
	b.ReportAllocs()
	for b.Loop() {
		m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"})
		m.Update(tea.KeyPressMsg{Code: tea.KeyBackspace})
		_ = m.View()
	}
}

// TestFrameDrawnAfterUpdates: bubbletea asks for a view after every
// message; the wizard draws again only when one may have changed it.
func TestFrameDrawnAfterUpdates(t *testing.T) {
	m := newModel(context.Background(), Options{Site: steps.Example(), StateDir: t.TempDir(), Actions: &fakeActions{}})
	m.Init()
	first := m.View().Content
	for _, msg := range []tea.Msg{tea.ColorProfileMsg{}, tea.EnvMsg{"TERM=xterm"}, tea.WindowSizeMsg{Width: 80, Height: 24}} {
		m.Update(msg)
		if m.View(); m.draws != 1 {
			t.Fatalf("after %T: %d frames drawn, want 1", msg, m.draws)
		}
	}
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	if v := m.View().Content; m.draws != 2 || v == first || !strings.Contains(v, "Next: Certificate authority") {
		t.Fatalf("a new size: %d frames drawn\n%s", m.draws, v)
	}
	m.Update(tea.KeyPressMsg{Code: tea.KeyTab})
	m.View()
	if m.draws != 3 {
		t.Fatalf("a key: %d frames drawn, want 3", m.draws)
	}
}

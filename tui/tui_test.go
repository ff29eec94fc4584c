package tui

import (
	"bytes"
	"context"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"ztwizard/steps"
)

func TestPlainSummary(t *testing.T) {
	var out bytes.Buffer
	err := Run(context.Background(), Options{Site: steps.Example(), SiteName: "example", StateDir: "/tmp/x", Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`site "oslo-prod"`, "node      db           10.100.0.1", "the site is valid."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestViewShowsStepsAndQuits(t *testing.T) {
	m := model{o: Options{Site: steps.Example(), SiteName: "example", StateDir: "/tmp/x"}}
	view := ansi.Strip(m.View().Content)
	for _, want := range []string{"1. Welcome", "9. Finish", "q quit"} {
		if !strings.Contains(view, want) {
			t.Errorf("view lacks %q:\n%s", want, view)
		}
	}
	_, cmd := m.Update(tea.KeyPressMsg{Code: 'q', Text: "q"})
	if cmd == nil {
		t.Fatal("q does not quit")
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("q does not quit")
	}
}

package tui

import (
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// TestBadInputBesideFieldBlocksNext types bad values into fields: each
// problem shows on the line under its field, and neither the item's Done
// nor the step's Next goes on.
func TestBadInputBesideFieldBlocksNext(t *testing.T) {
	tests := []struct {
		name    string
		keys    []string
		field   string // the field's line, with the typed value
		want    string // the problem under it
		editing bool   // the problem is in an item, whose editor must stay open
	}{
		{"address outside the mesh", []string{"ctrl+n", "ctrl+n", "tab", "tab", "down", "enter", "tab", "tab", "ctrl+u", "10.200.0.9"},
			"Mesh address 10.200.0.9", "✗ 10.200.0.9 is outside Mesh network 10.100.0.0/24", true},
		{"duplicate node name", []string{"ctrl+n", "ctrl+n", "tab", "tab", "a", "web"},
			"Name         web", `✗ "web" repeats node web`, true},
		{"principal with a comma", []string{"ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "tab", "tab", "enter", "tab", "ctrl+u", "root,devops"},
			"Principals root,devops", `✗ principal "root,devops" contains a comma`, true},
		{"port 70000", []string{"ctrl+n", "ctrl+n", "tab", "ctrl+u", "70000"},
			"Listen port  70000", "✗ port 70000 is out of range 1-65535", false},
		{"public port 70000", []string{"ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+u", "80 443 70000"},
			"Public TCP ports 80 443 70000", "✗ port 70000 is out of range 1-65535", false},
		{"text in a port", []string{"ctrl+n", "ctrl+n", "tab", "ctrl+u", "51a"},
			"Listen port  51a", `✗ "51a" is not a whole number`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, steps.Example())
			m.width, m.height = 120, 30
			press(m, tt.keys...)
			lines := strings.Split(screen(m), "\n")
			at := -1
			for i, l := range lines {
				if strings.Contains(l, tt.field) {
					at = i
					break
				}
			}
			if at < 0 {
				t.Fatalf("no line shows %q:\n%s", tt.field, screen(m))
			}
			beside := strings.Join(lines[at+1:min(at+4, len(lines))], "\n")
			if !strings.Contains(beside, tt.want) {
				t.Fatalf("no %q under %q:\n%s", tt.want, tt.field, screen(m))
			}
			step := m.cur
			press(m, "ctrl+n")
			if m.cur != step {
				t.Fatalf("Next left %s for %s with the problem", stepNames[step].long, stepNames[m.cur].long)
			}
			if tt.editing {
				press(m, "ctrl+s")
				if m.pages[m.cur].(*formPage).form.capture() == nil {
					t.Fatal("Done kept an item with a problem")
				}
				press(m, "esc", "esc")
				if m.pages[m.cur].(*formPage).form.capture() != nil {
					t.Fatal("esc twice did not undo")
				}
				if err := m.site.Validate(); err != nil {
					t.Fatalf("undo left problems: %v", err)
				}
			} else if !strings.Contains(screen(m), "Fix the marked problems to go on") {
				t.Fatalf("no word on why Next was refused:\n%s", screen(m))
			}
		})
	}
}

// TestNoteFromAnotherStep shows a service port missing from the public
// ports as a note on the service, which does not block it, and as a
// problem on the Firewall step, which does.
func TestNoteFromAnotherStep(t *testing.T) {
	site := steps.Example()
	site.Firewall.PublicTCP = []int{80}
	m := newTestModel(t, site)
	m.width, m.height = 120, 30
	press(m, "ctrl+n", "ctrl+n", "ctrl+n", "tab", "enter", "tab", "tab", "tab")
	if !strings.Contains(screen(m), "! port 443 is not in Public TCP ports") {
		t.Fatalf("no note beside the service's port:\n%s", screen(m))
	}
	press(m, "ctrl+s", "ctrl+n", "ctrl+n")
	if m.cur != stepFirewall {
		t.Fatalf("at %s, want the Firewall step", stepNames[m.cur].long)
	}
	if !strings.Contains(screen(m), "✗ port 443 is not in Public TCP ports") {
		t.Fatalf("the Firewall step does not show the missing port:\n%s", screen(m))
	}
	press(m, "ctrl+n")
	if m.cur != stepFirewall {
		t.Fatal("Next left the Firewall step with the port missing")
	}
	press(m, "ctrl+e", " 443", "ctrl+n")
	if m.cur != stepDatabases {
		t.Fatalf("with 443 open, still at %s:\n%s", stepNames[m.cur].long, screen(m))
	}
}

// TestRenameFollows renames a node and a client: their mentions follow.
func TestRenameFollows(t *testing.T) {
	m := newTestModel(t, steps.Example())
	press(m, "ctrl+n", "ctrl+n", "tab", "tab", "enter", "ctrl+u", "database", "ctrl+s")
	if err := m.site.Validate(); err != nil {
		t.Fatalf("after renaming db: %v", err)
	}
	if m.site.Nodes[1].Peers[0] != "database" || m.site.Databases[0].Node != "database" {
		t.Fatalf("mentions of db not renamed: %+v %+v", m.site.Nodes[1], m.site.Databases[0])
	}
	press(m, "ctrl+n", "enter", "ctrl+u", "worker", "ctrl+s")
	if m.site.Services[0].Allow[0] != "worker" {
		t.Fatalf("allow list not renamed: %v", m.site.Services[0].Allow)
	}
	press(m, "x", "y")
	if len(m.site.Clients) != 0 || len(m.site.Services[0].Allow) != 0 {
		t.Fatalf("removing the client left %v, %v", m.site.Clients, m.site.Services[0].Allow)
	}
}

// TestPasteTypesIntoField pastes a value: it lands in the focused field,
// up to the first line break, and is checked like typing.
func TestPasteTypesIntoField(t *testing.T) {
	m := newTestModel(t, Empty())
	press(m)
	m.Update(tea.PasteMsg{Content: "lab-1\nignored"})
	if m.site.Site != "lab-1" {
		t.Fatalf("site name %q after a paste", m.site.Site)
	}
	m.Update(tea.PasteMsg{Content: "!"})
	if !strings.Contains(screen(m), `✗ "lab-1!" is not a valid name`) {
		t.Fatalf("pasted text not checked:\n%s", screen(m))
	}
}

// TestNewServiceWarningBeforeName: a service with no name yet on a port
// the firewall keeps closed is not called "".
func TestNewServiceWarningBeforeName(t *testing.T) {
	s := steps.Example()
	s.Services = append(s.Services, steps.Service{Node: "web", Listen: 8443})
	var found bool
	for _, e := range validate(s) {
		if strings.Contains(e.Msg, "could reach") {
			found = true
			if strings.Contains(e.Msg, `""`) || !strings.Contains(e.Msg, "could reach the service") {
				t.Errorf("warning: %s", e.Msg)
			}
		}
	}
	if !found {
		t.Fatal("no warning about the closed port")
	}
}

// TestMessagesUseLabels shows problems with the labels on screen, never
// the site file's paths.
func TestMessagesUseLabels(t *testing.T) {
	s := steps.Example()
	s.SSH.AdminCIDRs = []string{"10.1.0.0/33"}
	s.Nodes[1].Address = "10.200.0.9"
	s.Services[0].Listen = 8443
	m := newTestModel(t, s, func(o *Options) { o.Loaded = true })
	m.width, m.height = 120, 40
	m.goTo(stepReview)
	scr := strings.Join(strings.Fields(strings.ReplaceAll(screen(m), "│", "")), " ")
	for _, want := range []string{"Admin networks:", "node web › Mesh address: 10.200.0.9 is outside Mesh network", "not in Public TCP ports"} {
		if !strings.Contains(scr, want) {
			t.Errorf("review lacks %q:\n%s", want, screen(m))
		}
	}
	for _, path := range []string{"ssh.admin_cidrs", "wireguard.network", "firewall.public_tcp", "nodes[1]", "services[0]"} {
		if strings.Contains(scr, path) {
			t.Errorf("review shows %q:\n%s", path, screen(m))
		}
	}
}

// TestBareAddressAndSeconds types a bare address into Admin networks (one
// host: /32 or /128) and a keepalive as a duration.
func TestBareAddressAndSeconds(t *testing.T) {
	s := steps.Example()
	nets := networks(func(s *steps.Site) *[]string { return &s.SSH.AdminCIDRs })
	if err := nets.set(s, "192.168.10.5 2001:db8::7, 10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.SSH.AdminCIDRs, " "); got != "192.168.10.5/32 2001:db8::7/128 10.0.0.0/8" {
		t.Fatalf("admin networks %q", got)
	}
	if errs := validate(s); len(errs) > 0 {
		t.Fatalf("the networks do not validate: %v", errs)
	}
	ka := seconds(func(s *steps.Site) *int { return &s.Nodes[1].Keepalive })
	for _, tt := range []struct {
		in   string
		want int
		bad  bool
	}{{"25", 25, false}, {"25s", 25, false}, {"1m", 60, false}, {"", 0, false}, {"1.5s", 0, true}, {"soon", 0, true}} {
		s.Nodes[1].Keepalive = 0
		err := ka.set(s, tt.in)
		if (err != nil) != tt.bad || !tt.bad && s.Nodes[1].Keepalive != tt.want {
			t.Errorf("keepalive %q: %d, %v", tt.in, s.Nodes[1].Keepalive, err)
		}
	}
	// Typed into the wizard, as an admin would.
	m := newTestModel(t, steps.Example())
	press(m, "ctrl+n", "ctrl+n", "ctrl+n", "ctrl+n", "tab", "ctrl+u", "192.168.10.5")
	if got := m.site.SSH.AdminCIDRs; len(got) != 1 || got[0] != "192.168.10.5/32" {
		t.Fatalf("typed: %v\n%s", got, screen(m))
	}
}

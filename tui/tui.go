// Package tui is ztwizard's terminal wizard: it walks an admin through the
// site step by step and fills a steps.Site. Without a terminal it prints the
// same content as plain text.
package tui

import (
	"context"
	"fmt"
	"io"
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"ztwizard/steps"
)

// Options is what the wizard starts from.
type Options struct {
	Site        *steps.Site // the site to show and edit
	SiteName    string      // where it came from, for the title
	StateDir    string      // the state folder it would write to
	In          io.Reader
	Out         io.Writer
	Interactive bool // a terminal on both ends; false prints plain text
}

// Steps are the wizard's steps, in order.
var Steps = []string{"Welcome", "Certificate authority", "WireGuard mesh", "mTLS services",
	"SSH users", "Firewall", "Databases", "Review", "Finish"}

// Run shows the wizard until the admin leaves it.
func Run(ctx context.Context, o Options) error {
	if !o.Interactive {
		_, err := io.WriteString(o.Out, Summary(o.Site, o.SiteName, o.StateDir))
		return err
	}
	p := tea.NewProgram(model{o: o}, tea.WithContext(ctx), tea.WithInput(o.In), tea.WithOutput(o.Out))
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("wizard: %w", err)
	}
	return nil
}

// Summary is the site at a glance, with its validation result.
func Summary(site *steps.Site, name, stateDir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ztwizard — site %q (%s)\nstate folder: %s\n\n", site.Site, name, stateDir)
	fmt.Fprintf(&b, "CA          %s, %s, valid %s, leaves %s\n", site.CA.Subject.CommonName, site.CA.Key, site.CA.Validity, site.CA.CertValidity)
	fmt.Fprintf(&b, "mesh        %s, port %d\n", site.WireGuard.Network, site.WireGuard.ListenPort)
	addrs, _ := site.Addresses(nil)
	for _, n := range site.Nodes {
		fmt.Fprintf(&b, "  node      %-12s %-15s peers %s\n", n.Name, addrs[n.Name], strings.Join(n.Peers, ", "))
	}
	for _, s := range site.Services {
		fmt.Fprintf(&b, "service     %s on %s: https://%s:%d -> %s, allow %s\n", s.Name, s.Node, s.ServerName, s.Listen, s.Upstream, strings.Join(s.Allow, ", "))
	}
	for _, d := range site.Databases {
		fmt.Fprintf(&b, "database    %s (%s) on %s:%d, clients %s\n", d.Name, d.Engine, d.Node, d.Port, strings.Join(d.Clients, ", "))
	}
	for _, u := range site.SSH.Users {
		fmt.Fprintf(&b, "ssh user    %s as %s, %s certificates\n", u.Name, strings.Join(u.Principals, ", "), site.SSH.CertValidity)
	}
	fmt.Fprintf(&b, "firewall    drop by default; public tcp %v; ssh from %s and the mesh\n", site.Firewall.PublicTCP, strings.Join(site.SSH.AdminCIDRs, ", "))
	if err := site.Validate(); err != nil {
		fmt.Fprintf(&b, "\nproblems:\n%v\n", err)
	} else {
		b.WriteString("\nthe site is valid.\n")
	}
	return b.String()
}

type model struct {
	o             Options
	width, height int
}

func (m model) Init() tea.Cmd { return nil }

func (m model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyPressMsg:
		if key.Matches(msg, quitKey) {
			return m, tea.Quit
		}
	}
	return m, nil
}

var (
	sidebar = lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).Padding(0, 1).MarginRight(1)
	quitKey = key.NewBinding(key.WithKeys("q", "esc", "ctrl+c"), key.WithHelp("q", "quit"))
)

func (m model) View() tea.View {
	var side strings.Builder
	for i, s := range Steps {
		fmt.Fprintf(&side, "%d. %s\n", i+1, s)
	}
	body := lipgloss.JoinHorizontal(lipgloss.Top, sidebar.Render(strings.TrimSuffix(side.String(), "\n")),
		Summary(m.o.Site, m.o.SiteName, m.o.StateDir))
	v := tea.NewView(body + "\n" + help.New().ShortHelpView([]key.Binding{quitKey}))
	v.AltScreen = true
	return v
}

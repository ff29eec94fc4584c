package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// reviewPage shows the site at a glance and, per node, what applying it
// would change; or, while the site has problems, every problem by step.
type reviewPage struct {
	node    int
	vp      viewport.Model
	version int                     // the site version the results are for
	results map[string]reviewResult // by node
	pending map[string]bool
	shown   string // what the viewport holds, to keep its scroll
}

type reviewResult struct {
	text string
	err  error
}

// reviewMsg is a node's review, for site version version.
type reviewMsg struct {
	node    string
	version int
	reviewResult
}

func newReviewPage() *reviewPage {
	return &reviewPage{vp: viewport.New(), results: map[string]reviewResult{}, pending: map[string]bool{}}
}

func (p *reviewPage) reload(*model) {}

// enter starts every node's review, the selected one first, so that a node
// whose plan fails is marked whichever is selected.
func (p *reviewPage) enter(m *model) tea.Cmd {
	p.vp.GotoTop()
	cmds := []tea.Cmd{p.request(m)}
	for _, n := range nodeNames(m.site) {
		cmds = append(cmds, p.requestNode(m, n))
	}
	return tea.Batch(cmds...)
}

// failed are the nodes whose review failed, for the site as it is now.
func (p *reviewPage) failed(m *model) []string {
	if p.version != m.version || len(m.errs) > 0 {
		return nil
	}
	var out []string
	for _, n := range nodeNames(m.site) {
		if r, ok := p.results[n]; ok && r.err != nil {
			out = append(out, n)
		}
	}
	return out
}

// current is the selected node's name.
func (p *reviewPage) current(m *model) string {
	names := nodeNames(m.site)
	if len(names) == 0 {
		return ""
	}
	p.node = min(max(p.node, 0), len(names)-1)
	return names[p.node]
}

// request starts building the selected node's review, unless it is there.
func (p *reviewPage) request(m *model) tea.Cmd { return p.requestNode(m, p.current(m)) }

// requestNode starts building node's review, unless it is there.
func (p *reviewPage) requestNode(m *model, node string) tea.Cmd {
	if p.version != m.version {
		p.version = m.version
		p.results = map[string]reviewResult{}
		p.pending = map[string]bool{}
	}
	if len(m.errs) > 0 || node == "" || p.pending[node] {
		return nil
	}
	if _, ok := p.results[node]; ok {
		return nil
	}
	if m.o.Actions == nil {
		p.results[node] = reviewResult{text: "(no review available)"}
		return nil
	}
	p.pending[node] = true
	ctx, job, version, actions := m.ctx, m.job(), m.version, m.o.Actions
	return func() tea.Msg {
		text, err := actions.Review(ctx, job, node)
		return reviewMsg{node: node, version: version, reviewResult: reviewResult{text, err}}
	}
}

func (p *reviewPage) receive(m *model, msg tea.Msg) tea.Cmd {
	r, ok := msg.(reviewMsg)
	if !ok {
		return nil
	}
	delete(p.pending, r.node)
	if r.version != m.version {
		if m.cur == stepReview {
			return p.request(m)
		}
		return nil
	}
	p.results[r.node] = r.reviewResult
	return nil
}

func (p *reviewPage) update(m *model, msg tea.KeyPressMsg) (tea.Cmd, bool) {
	switch {
	case key.Matches(msg, keys.Enter):
		if len(m.errs) > 0 {
			return m.goTo(ownerOf(m.errs[0])), true
		}
		return m.next(), true
	case key.Matches(msg, keys.Tabs):
		n := len(nodeNames(m.site))
		if n > 0 {
			if msg.String() == "left" {
				p.node = (p.node + n - 1) % n
			} else {
				p.node = (p.node + 1) % n
			}
			p.vp.GotoTop()
		}
		return p.request(m), true
	case msg.String() == "r":
		delete(p.results, p.current(m))
		return p.request(m), true
	case key.Matches(msg, keys.Scroll), key.Matches(msg, keys.Page), msg.String() == "home", msg.String() == "end":
		switch msg.String() {
		case "up", "k":
			p.vp.ScrollUp(1)
		case "down", "j":
			p.vp.ScrollDown(1)
		case "pgup", "b":
			p.vp.PageUp()
		case "pgdown", "space":
			p.vp.PageDown()
		case "home":
			p.vp.GotoTop()
		case "end":
			p.vp.GotoBottom()
		}
		return nil, true
	}
	return nil, false
}

// glance is the site in a few lines.
func glance(site *steps.Site, sess *session, width int) []string {
	s := site.Clone()
	s.SetDefaults()
	addrs := sess.addresses(s)
	var nodes, services, dbs, users []string
	for _, n := range s.Nodes {
		a := n.Address
		if v, ok := addrs[n.Name]; ok && a == "" {
			a = v.String()
		}
		nodes = append(nodes, strings.TrimSpace(n.Name+" "+a))
	}
	for _, sv := range s.Services {
		services = append(services, sv.Name+" on "+sv.Node)
	}
	for _, d := range s.Databases {
		dbs = append(dbs, d.Name+" on "+d.Node)
	}
	for _, u := range s.SSH.Users {
		users = append(users, u.Name)
	}
	none := func(l []string) string {
		if len(l) == 0 {
			return "none"
		}
		return strings.Join(l, ", ")
	}
	ports := make([]string, len(s.Firewall.PublicTCP))
	for i, p := range s.Firewall.PublicTCP {
		ports[i] = itoa(p)
	}
	rows := [][2]string{
		{"CA", fmt.Sprintf("%s, %s, %s (leaves %s)", s.CA.Subject.CommonName, s.CA.Key, s.CA.Validity, s.CA.CertValidity)},
		{"Mesh", fmt.Sprintf("%s port %d: %s", s.WireGuard.Network, s.WireGuard.ListenPort, none(nodes))},
		{"Services", fmt.Sprintf("%s; %s", none(services), plural(len(s.Clients), "client"))},
		{"Databases", none(dbs)},
		{"SSH", fmt.Sprintf("%s; %s certificates; from %s and the mesh", none(users), s.SSH.CertValidity, none(s.SSH.AdminCIDRs))},
		{"Firewall", fmt.Sprintf("drop; public tcp %s; icmp %s", none(ports), s.Firewall.ICMPRate)},
	}
	var lines []string
	for _, r := range rows {
		w := wrap(r[1], max(width-10, 10))
		if len(w) > 2 {
			w = append(w[:1], truncate(w[1]+" "+w[2], width-10))
		}
		for i, l := range w {
			lead := pad(r[0], 10)
			if i > 0 {
				lead = pad("", 10)
			}
			lines = append(lines, lead+l)
		}
	}
	return lines
}

// problemsByStep lists every problem under the step that fixes it.
func problemsByStep(m *model, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", m.th.errText.Render(fmt.Sprintf("The site has %s; fix them before Finish.", plural(len(m.errs), "problem"))))
	for id := stepWelcome; id < stepCount; id++ {
		var list steps.Errors
		for _, e := range m.errs {
			if ownerOf(e) == id {
				list = append(list, e)
			}
		}
		if len(list) == 0 {
			continue
		}
		b.WriteString("\n" + m.th.title.Render(stepNames[id].long) + "\n")
		for _, e := range list {
			for i, l := range wrap(problemText(m.site, e), width-4) {
				lead := "  ✗ "
				if i > 0 {
					lead = "    "
				}
				b.WriteString(m.th.errText.Render(lead+l) + "\n")
			}
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (p *reviewPage) view(m *model, width, height int) string {
	return m.pageFrame("Review", "The site, and what each node receives: its files, firewall and peers.", width, height,
		func(h int) string {
			lines := glance(m.site, &m.sess, width)
			for i, l := range lines {
				lines[i] = m.th.value.Render(l)
			}
			lines = append(lines, "")
			var content string
			if len(m.errs) > 0 {
				content = problemsByStep(m, width)
			} else {
				lines = append(lines, p.tabs(m, width))
				content = p.nodeText(m, width)
			}
			p.vp.SetWidth(width)
			p.vp.SetHeight(max(h-len(lines), 1))
			if content != p.shown {
				p.vp.SetContent(content)
				p.shown = content
			}
			return strings.Join(lines, "\n") + "\n" + p.vp.View()
		})
}

// tabs is the row of node names, the selected one marked.
func (p *reviewPage) tabs(m *model, width int) string {
	cur := p.current(m)
	var out []string
	for _, n := range nodeNames(m.site) {
		if r, ok := p.results[n]; ok && r.err != nil && p.version == m.version {
			n = "✗ " + n
		}
		if strings.TrimPrefix(n, "✗ ") == cur {
			out = append(out, m.th.tabOn.Render(n))
		} else {
			out = append(out, m.th.tab.Render(n))
		}
	}
	return truncate(m.th.status.Render("Node ")+strings.Join(out, " "), width)
}

// nodeText is the selected node's review, or why it is not there.
func (p *reviewPage) nodeText(m *model, width int) string {
	node := p.current(m)
	r, ok := p.results[node]
	switch {
	case node == "":
		return m.th.desc.Render("The site has no nodes yet.")
	case !ok:
		return m.th.desc.Render("Building the plan of " + node + "…")
	case r.err != nil:
		return m.th.errText.Render(strings.Join(wrap("✗ The plan of node "+node+" fails: "+r.err.Error(), width), "\n"))
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(r.text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "# "), strings.HasPrefix(l, "== "):
			b.WriteString(m.th.title.Render(l))
		case strings.HasPrefix(l, "+"):
			b.WriteString(m.th.okText.Render(l))
		case strings.HasPrefix(l, "-"):
			b.WriteString(m.th.errText.Render(l))
		default:
			b.WriteString(m.th.code.Render(l))
		}
		b.WriteString("\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (p *reviewPage) keys(m *model) []key.Binding {
	if len(m.errs) > 0 {
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "go to the first problem")), keys.Scroll, keys.Back}
	}
	return []key.Binding{keys.Tabs, keys.Scroll, keys.NextStep, keys.Back}
}

func (p *reviewPage) blocking(m *model) []string {
	var out []string
	for _, e := range m.errs {
		out = append(out, problemText(m.site, e))
	}
	return out
}

func (p *reviewPage) attempt(*model) tea.Cmd { return nil }

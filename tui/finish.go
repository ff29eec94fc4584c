package tui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"ztwizard/steps"
)

// finishResult is a line of the Finish log: what an action did, or why it
// failed.
type finishResult struct {
	id   string // the action
	line string
	bad  bool
}

// finishAction is one thing the Finish step does with the site.
type finishAction struct {
	id, title, line string
	form            *form // its settings and its button; nil for none
}

// finishPage offers what to do with the finished site: save it, write a
// node's bundle, bake an image, export credentials, write the Ansible push,
// apply it here.
type finishPage struct {
	actions []finishAction
	menu    int // the selected action
	active  int // the action whose form is open, -1 for the menu
	results []finishResult

	node, image, imageOut, bundleDir, export, exportDir string
	diskSize, address, gateway, dns                     string // the bake's network and disk
	pushDir, pushUser, pushIdentity                     string // the Ansible push's folder and login
}

func newFinishPage(m *model) *finishPage {
	p := &finishPage{active: -1, image: "node"}
	str := func(v *string) binding {
		return binding{get: func(*steps.Site) string { return *v }, set: func(_ *steps.Site, s string) error { *v = strings.TrimSpace(s); return nil }}
	}
	ptr := func(v *string) func(*steps.Site) *string { return func(*steps.Site) *string { return v } }
	node := func() field {
		return newSelect("Node", "The node to work on.", "", ptr(&p.node), nodeOptions)
	}
	sitePath := newText("Site file", "Where to write site.yaml; every other ztwizard command reads it (-c).", "",
		binding{
			get: func(*steps.Site) string { return m.sess.sitePath },
			set: func(_ *steps.Site, v string) error {
				if strings.TrimSpace(v) == "" {
					return errors.New("name the file to write")
				}
				m.sess.sitePath = strings.TrimSpace(v)
				return nil
			},
		})
	p.actions = []finishAction{
		{id: "save", title: "Save the site file", line: "write site.yaml",
			form: newForm(sitePath, newButton("save", label("Save")))},
		{id: "render", title: "Write a node's bundle", line: "its files, into a folder",
			form: newForm(node(), newText("Folder", "Where the files go, laid out as under / (made 0700: it holds keys).", "", str(&p.bundleDir)).
				withHint(func(*env) string { return "./" + p.nodeName(m) }),
				newButton("render", label("Write the bundle")))},
		{id: "bake", title: "Bake an appliance image", line: "a bootable qcow2 for KVM",
			form: newForm(
				newSelect("Image", "A node's own image, or a golden one without secrets (seeded at first boot).", "", ptr(&p.image),
					func(*env) []option { return []option{{"node", "for one node"}, {"golden", "golden (no secrets)"}} }),
				node(),
				newText("Image file", "The qcow2 file to write (0600 for a node's image: it holds keys).", "", str(&p.imageOut)).
					withHint(func(*env) string { return p.imageName(m) }),
				newText("Disk size", "The disk's size, e.g. 2G or 1536M; the root grows to a bigger disk at boot.", "", str(&p.diskSize)).
					withHint(func(*env) string { return "2G" }),
				newText("Address", "A fixed address with its prefix for the Ethernet interfaces, e.g. 192.168.1.100/24.", "", str(&p.address)).
					withHint(func(*env) string { return "DHCP" }),
				newText("Gateway", "The default gateway, with a fixed address.", "", str(&p.gateway)).
					withHint(func(*env) string { return "none" }),
				newText("DNS", "Name servers, separated by spaces, with a fixed address.", "", str(&p.dns)).
					withHint(func(*env) string { return "none" }),
				newButton("bake", label("Bake")))},
		{id: "export", title: "Export credentials", line: "wg-quick and QR, PKCS#12",
			form: newForm(
				newSelect("Credentials", "A node's WireGuard config (with a QR code for phones), or a client's PKCS#12 bundle.", "", ptr(&p.export), exportOptions),
				newText("Folder", "Where the files go (made 0700).", "", str(&p.exportDir)).
					withHint(func(*env) string { return "./export" }),
				newButton("export", label("Export")))},
		{id: "ansible", title: "Write the Ansible push", line: "inventory and playbook for every node",
			form: newForm(
				newText("Folder", "Where the inventory, playbook and known_hosts go (made 0700; requests and bundles go there too).", "", str(&p.pushDir)).
					withHint(func(*env) string { return "./push" }),
				newText("SSH user", "The account you log in as on the nodes: a principal of your SSH certificate.", "", str(&p.pushUser)).
					withHint(func(*env) string { return "root" }),
				newText("Identity file", "Your private key; its certificate is the same name with -cert.pub.", "", str(&p.pushIdentity)).
					withHint(func(*env) string { return "~/.ssh/id_ed25519" }),
				newButton("ansible", label("Write the push")))},
		{id: "apply", title: "Apply to this host", line: "firewall, sshd, mesh",
			form: newForm(node(), newButton("apply", label("Apply to this host…")))},
		{id: "leave", title: "Leave the wizard", line: "answers kept as a draft"},
	}
	return p
}

// exportOptions are every node and client of the site.
func exportOptions(e *env) []option {
	var out []option
	for _, n := range nodeNames(e.site) {
		out = append(out, option{"node:" + n, "node " + n + " (wg-quick + QR)"})
	}
	for _, c := range e.site.Clients {
		out = append(out, option{"client:" + c.Name, "client " + c.Name + " (PKCS#12)"})
	}
	return out
}

// nodeName is the chosen node, the first when none was chosen.
func (p *finishPage) nodeName(m *model) string {
	names := nodeNames(m.site)
	for _, n := range names {
		if n == p.node {
			return n
		}
	}
	if len(names) > 0 {
		p.node = names[0]
		return p.node
	}
	return ""
}

func (p *finishPage) imageName(m *model) string {
	if p.image == "golden" {
		return m.site.Site + "-golden.qcow2"
	}
	return p.nodeName(m) + ".qcow2"
}

func (p *finishPage) reload(m *model) {
	for _, a := range p.actions {
		if a.form != nil {
			a.form.reload(m.env(stepFinish))
		}
	}
}

func (p *finishPage) enter(m *model) tea.Cmd {
	if p.node == "" && m.o.ThisNode != nil {
		p.node = m.o.ThisNode(m.site)
	}
	p.nodeName(m)
	if opts := exportOptions(m.env(stepFinish)); len(opts) > 0 && !hasOption(opts, p.export) {
		p.export = opts[0].value
	}
	return nil
}

func hasOption(opts []option, v string) bool {
	for _, o := range opts {
		if o.value == v {
			return true
		}
	}
	return false
}

func (p *finishPage) update(m *model, msg tea.KeyPressMsg) (tea.Cmd, bool) {
	if p.active < 0 {
		switch msg.String() {
		case "up", "shift+tab":
			p.menu = (p.menu + len(p.actions) - 1) % len(p.actions)
			return nil, true
		case "down", "tab":
			p.menu = (p.menu + 1) % len(p.actions)
			return nil, true
		case "enter":
			a := p.actions[p.menu]
			if a.form == nil {
				return p.do(m, a.id), true
			}
			p.active = p.menu
			a.form.reload(m.env(stepFinish))
			return a.form.setFocus(0, 1), true
		}
		return nil, false
	}
	if msg.String() == "esc" {
		p.active = -1
		return nil, true
	}
	f := p.actions[p.active].form
	o := f.update(m.env(stepFinish), msg)
	if o.action != "" {
		if probs := f.blocking(m.env(stepFinish)); len(probs) > 0 {
			m.setStatus(true, probs[0])
			return f.focusFirstProblem(m.env(stepFinish)), true
		}
		return tea.Batch(o.cmd, p.do(m, o.action)), true
	}
	return o.cmd, true
}

// result adds a line to the results shown under the menu. A success of
// action id drops its earlier failures: they are fixed.
func (p *finishPage) result(m *model, id string, err error, format string, a ...any) {
	if err != nil {
		msg := err.Error()
		if errors.Is(err, ErrNotAvailable) {
			msg = plainly(err)
			p.results = append(p.results, finishResult{id, m.th.noteText.Render("• " + msg), false})
		} else {
			p.results = append(p.results, finishResult{id, m.th.errText.Render("✗ " + msg), true})
		}
		return
	}
	p.results = slices.DeleteFunc(p.results, func(r finishResult) bool { return r.id == id && r.bad })
	p.results = append(p.results, finishResult{id, m.th.okText.Render("✓ " + fmt.Sprintf(format, a...)), false})
}

// plainly is an ErrNotAvailable error's own message, as a sentence.
func plainly(err error) string {
	msg := strings.TrimSuffix(err.Error(), ": "+ErrNotAvailable.Error())
	if msg == "" {
		return err.Error()
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// renderMsg and exportMsg are the results of work the Finish step started.
type (
	renderMsg struct {
		node, summary string
		err           error
	}
	keysMsg struct {
		summary string
		err     error
	}
	exportMsg struct {
		what, name string
		out        Exported
		err        error
	}
	ansibleMsg struct {
		dir string
		out Exported
		err error
	}
)

// do runs action id.
func (p *finishPage) do(m *model, id string) tea.Cmd {
	a := m.o.Actions
	if a == nil && id != "leave" {
		m.setStatus(true, "Nothing can be done with the site in this run.")
		return nil
	}
	ctx, job, node := m.ctx, m.job(), p.nodeName(m)
	switch id {
	case "save":
		path := m.sess.sitePath
		err := a.Save(job.Site, path)
		if abs, aerr := filepath.Abs(path); aerr == nil {
			path = abs
		}
		p.result(m, "save", err, "Saved %s.", path)
		if err == nil {
			m.dirty, m.saved = false, path
			if err := removeDraft(m.draftAt); err != nil {
				p.result(m, "draft", err, "")
			}
			m.draftNote = "saved"
			p.active = -1
			if job.Passphrase != nil {
				// The passphrase is never written down: it makes the CA
				// keys encrypted now, or it would be lost with the wizard.
				return func() tea.Msg {
					s, err := a.Keys(ctx, job)
					return keysMsg{s, err}
				}
			}
		}
	case "render":
		dir := p.bundleDir
		if dir == "" {
			dir = "./" + node
		}
		m.setStatus(false, "Writing the bundle of "+node+"…")
		return func() tea.Msg {
			s, err := a.Render(ctx, job, node, dir)
			return renderMsg{node, s, err}
		}
	case "apply":
		d, cmd := newApplyDialog(m, node)
		m.dialog = d
		return cmd
	case "bake":
		out := p.imageOut
		if out == "" {
			out = p.imageName(m)
		}
		d := &bakeDialog{node: node, opts: BakeOptions{Golden: p.image == "golden", Out: out, Size: p.diskSize,
			Address: p.address, Gateway: p.gateway, DNS: splitWords(p.dns, true)}}
		m.dialog = d
		return d.start(m)
	case "export":
		what, name, _ := strings.Cut(p.export, ":")
		dir := p.exportDir
		if dir == "" {
			dir = "./export"
		}
		m.setStatus(false, "Exporting "+what+" "+name+"…")
		return func() tea.Msg {
			out, err := a.Export(ctx, job, what, name, dir)
			return exportMsg{what, name, out, err}
		}
	case "ansible":
		path := m.sess.sitePath
		if m.dirty || (m.saved == "" && !m.o.Loaded) {
			p.result(m, "ansible", fmt.Errorf("save the site first: the playbook reads it from %s", path), "")
			return nil
		}
		if m.saved != "" {
			path = m.saved
		}
		o := AnsibleOptions{Dir: p.pushDir, SitePath: path, User: p.pushUser, Identity: expandHome(p.pushIdentity)}
		if o.Dir == "" {
			o.Dir = "./push"
		}
		m.setStatus(false, "Writing the Ansible push…")
		return func() tea.Msg {
			out, err := a.Ansible(ctx, job, o)
			return ansibleMsg{o.Dir, out, err}
		}
	case "leave":
		m.dialog = &quitDialog{}
	}
	return nil
}

func (p *finishPage) receive(m *model, msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case keysMsg:
		p.result(m, "keys", msg.err, "%s", msg.summary)
	case renderMsg:
		m.status = ""
		p.result(m, "render "+msg.node, msg.err, "%s", msg.summary)
	case exportMsg:
		m.status = ""
		if msg.err != nil {
			p.result(m, "export "+msg.what+" "+msg.name, msg.err, "")
			return nil
		}
		p.result(m, "export "+msg.what+" "+msg.name, nil, "Exported %s %s: %s.", msg.what, msg.name, strings.Join(msg.out.Files, ", "))
		if m.dialog == nil {
			m.dialog = newExportDialog(m, msg)
		}
	case ansibleMsg:
		m.status = ""
		if msg.err != nil {
			p.result(m, "ansible", msg.err, "")
			return nil
		}
		next := "ansible-playbook -i " + filepath.Join(msg.dir, "inventory.yml") + " " + filepath.Join(msg.dir, "push.yml")
		p.result(m, "ansible", nil, "Wrote the Ansible push: %s. Push with: %s", strings.Join(msg.out.Files, ", "), next)
		if m.dialog == nil {
			m.dialog = &exportDialog{title: "Wrote the Ansible push", msg: exportMsg{out: msg.out},
				next: "Push every node with:\n" + next}
		}
	}
	return nil
}

// expandHome is path with a leading ~/ made the home folder's, as a shell
// would; as it is when there is no home folder.
func expandHome(path string) string {
	rest, ok := strings.CutPrefix(path, "~/")
	if !ok {
		return path
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return path
	}
	return filepath.Join(home, rest)
}

func (p *finishPage) view(m *model, width, height int) string {
	e := m.env(stepFinish)
	if p.active >= 0 {
		a := p.actions[p.active]
		return m.pageFrame("Finish › "+a.title, a.line, width, height, func(h int) string {
			body := a.form.view(e, width, h-4)
			res := p.resultLines(width, h-strings.Count(body, "\n")-2)
			if len(res) > 0 {
				body += "\n\n" + strings.Join(res, "\n")
			}
			return body
		})
	}
	intro := "The site is valid. Save it, then put it to work."
	switch {
	case m.dirty:
		intro = "The site is valid but not saved yet. Save it, then put it to work."
	case m.saved != "":
		intro = "The site is valid and saved in " + m.saved + ". Put it to work: a bundle, this host, an image, credentials."
	case m.o.Loaded:
		intro = "The site is valid and unchanged from " + m.sess.sitePath + ". Put it to work: a bundle, this host, an image, credentials."
	}
	if bad := m.pages[stepReview].(*reviewPage).failed(m); len(bad) > 0 {
		intro = "The site is valid, but the plan of " + plural(len(bad), "node") + " fails (" + strings.Join(bad, ", ") + "): see Review."
	}
	return m.pageFrame("Finish", intro, width, height, func(h int) string {
		tw := 0
		for _, a := range p.actions {
			tw = max(tw, len(a.title))
		}
		var lines []string
		for i, a := range p.actions {
			line := pad(a.title, tw) + "  " + m.th.desc.Render(a.line)
			switch {
			case a.id == "save":
				line = pad(a.title, tw) + "  " + m.th.desc.Render("to "+m.sess.sitePath)
			case a.id == "leave" && !m.dirty:
				line = pad(a.title, tw) + "  " + m.th.desc.Render("nothing unsaved")
			}
			if i == p.menu {
				lines = append(lines, m.th.marker.Render("▸ ")+m.th.labelFocus.Render(pad(a.title, tw))+
					strings.TrimPrefix(line, pad(a.title, tw)))
			} else {
				lines = append(lines, "  "+line)
			}
		}
		res := p.resultLines(width, max(h-len(lines)-1, 0))
		if len(res) > 0 {
			lines = append(lines, "")
			lines = append(lines, res...)
		}
		return strings.Join(lines, "\n")
	})
}

// resultLines are the latest results that fit in n lines, wrapped to
// width, oldest first.
func (p *finishPage) resultLines(width, n int) []string {
	var out []string
	for i := len(p.results) - 1; i >= 0; i-- {
		w := wrap(p.results[i].line, width)
		if len(out)+len(w) > n {
			break
		}
		out = append(w, out...)
	}
	return out
}

func (p *finishPage) keys(*model) []key.Binding {
	if p.active >= 0 {
		return append(p.actions[p.active].form.keys(), key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "menu")))
	}
	return []key.Binding{key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑/↓", "choose")),
		key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open")), keys.Back}
}

func (p *finishPage) blocking(*model) []string { return nil }
func (p *finishPage) attempt(*model) tea.Cmd   { return nil }

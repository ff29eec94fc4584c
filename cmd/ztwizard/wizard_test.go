package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/creack/pty"

	"ztwizard/steps"
	"ztwizard/steps/host"
	"ztwizard/tui"
)

// tmuxPane runs the real binary in a detached tmux session of its own
// (private socket, 80x24), so a test can type into it and read its screen.
type tmuxPane struct {
	t    *testing.T
	sock string
}

// startPane starts ztwizard with args in dir inside tmux.
func startPane(t *testing.T, dir string, args ...string) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is needed for the wizard's end-to-end tests (make deps installs it)")
	}
	sockDir, err := os.MkdirTemp("", "ztw-tmux-")
	if err != nil {
		t.Fatal(err)
	}
	p := &tmuxPane{t: t, sock: filepath.Join(sockDir, "s")}
	t.Cleanup(func() {
		exec.Command("tmux", "-S", p.sock, "kill-server").Run()
		os.RemoveAll(sockDir)
	})
	cmd := append([]string{"-S", p.sock, "-f", "/dev/null", "new-session", "-d", "-s", "w", "-x", "80", "-y", "24",
		"-c", dir, "-e", "TERM=xterm-256color", "-e", "ZTWIZARD_STATE=", "-e", "TZ=UTC", "--",
		"sh", "-c", `"$0" "$@"; echo "ztwizard-exit=$?"`, bin}, args...)
	if out, err := exec.Command("tmux", cmd...).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v\n%s", err, out)
	}
	p.tmux("set-option", "-t", "w", "remain-on-exit", "on")
	return p
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// screen is what the pane shows.
func (p *tmuxPane) screen() string { return p.tmux("capture-pane", "-p", "-t", "w") }

// keys sends tmux key names ("Tab", "C-n", "Enter").
func (p *tmuxPane) keys(names ...string) {
	p.t.Helper()
	for _, k := range names {
		p.tmux("send-keys", "-t", "w", k)
	}
}

// typed sends text as it is.
func (p *tmuxPane) typed(s string) {
	p.t.Helper()
	p.tmux("send-keys", "-t", "w", "-l", s)
}

// wait waits until the screen shows want, at most 15 seconds.
func (p *tmuxPane) wait(want string) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := p.screen()
		if strings.Contains(s, want) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the screen never showed %q:\n%s", want, s)
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// exited waits for the program to end and returns its exit status, which
// the shell around it prints.
func (p *tmuxPane) exited() string {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var s string
	for {
		// The line may have scrolled off the screen: look in its history too.
		s = p.tmux("capture-pane", "-p", "-S", "-100", "-t", "w")
		if strings.Contains(s, "ztwizard-exit=") {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the program never ended:\n%s", s)
		}
		time.Sleep(30 * time.Millisecond)
	}
	_, after, _ := strings.Cut(s, "ztwizard-exit=")
	return strings.Fields(after)[0]
}

// field types text into a field and waits for the screen to show it.
func (p *tmuxPane) field(text string) {
	p.t.Helper()
	p.typed(text)
	p.wait(text)
}

// next goes to the next step and waits for its title.
func (p *tmuxPane) next(title string) {
	p.t.Helper()
	p.keys("C-n")
	p.wait(title)
}

// done keeps the item being edited and waits for the list.
func (p *tmuxPane) done(row string) {
	p.t.Helper()
	p.keys("C-s")
	p.wait(row)
}

// typeWelcomeToMesh fills the first steps and the db node from an empty
// start, leaving the wizard on the mesh step's node list.
func typeWelcomeToMesh(p *tmuxPane) {
	p.wait("Site name")
	p.field("oslo-prod")
	p.next("Your own CA signs")
	p.field("Internal Root CA")
	p.keys("Tab")
	p.field("MyOrg")
	p.keys("Tab")
	p.field("NO")
	p.next("A WireGuard mesh joins")
	p.field("10.100.0.0/24")
	p.keys("Tab", "Tab", "Enter")
	p.wait("› node (new)")
	p.field("db")
	p.keys("Tab")
	p.field("192.168.1.100:51820")
	p.keys("Tab")
	p.field("10.100.0.1")
	p.done("+ Add a node")
}

// TestWizardTypesExampleInTerminal drives the real binary in a terminal:
// it types the design's example site from an empty start, saves it, and
// checks the file is the example and `ztwizard validate` accepts it.
func TestWizardTypesExampleInTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	dir := t.TempDir()
	st := filepath.Join(dir, "state")
	p := startPane(t, dir, "wizard", "--empty", "--state", st, "-c", "site.yaml")
	typeWelcomeToMesh(p)

	p.keys("a")
	p.wait("› node (new)")
	p.field("web")
	p.keys("Tab")
	p.field("192.168.1.50:51820")
	p.keys("Tab")
	p.field("10.100.0.2")
	p.keys("Tab", "Space")
	p.wait("[x] db")
	p.keys("Tab")
	p.field("25")
	p.done("web  10.100.0.2")
	// A link works both ways: db shows web, which links to it, ticked.
	p.keys("Up", "Enter")
	p.wait("› node db")
	p.keys("Tab", "Tab", "Tab")
	p.wait("[x] web")
	p.done("↔ web")
	p.next("nginx fronts each")

	p.keys("Enter")
	p.wait("› client (new)")
	p.field("service-worker-01")
	p.keys("Tab")
	p.field("MyOrg")
	p.done("service-worker-01  MyOrg")
	p.keys("Tab", "Enter")
	p.wait("› service (new)")
	p.field("api")
	p.keys("Tab", "Right")
	p.wait("‹ web ›")
	p.keys("Tab")
	p.field("api.internal.example.com")
	p.keys("Tab", "Tab")
	p.field("http://127.0.0.1:8080")
	p.keys("Tab", "Space")
	p.wait("[x] service-worker-01")
	p.done("api  on web")
	p.next("sshd trusts")

	p.keys("Tab")
	p.field("192.168.10.0/24")
	p.keys("Tab", "Enter")
	p.wait("› user (new)")
	p.field("alice")
	p.keys("Tab")
	p.field("root devops")
	p.done("alice  as root devops")
	p.next("Each node drops")

	p.field("80 443")
	p.next("Each database listens")
	p.keys("Enter")
	p.wait("› database (new)")
	p.field("main")
	p.keys("Tab", "Tab", "Tab", "Tab", "Space")
	p.wait("[x] web")
	p.done("main  mariadb  on db:3306  from web")
	p.next("what each node receives")
	p.wait("# What node db receives")
	p.next("Save the site file")
	p.keys("Enter")
	p.wait("Finish › Save the site file")
	p.keys("Enter", "Enter")
	p.wait("✓ Saved")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	if code := p.exited(); code != "0" {
		t.Fatalf("exit %s:\n%s", code, p.screen())
	}

	got, err := os.ReadFile(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The example, but for the link db-web, set once (on web).
	example := steps.Example()
	example.Nodes[0].Peers = nil
	want, _ := example.Marshal()
	if !bytes.Equal(got, want) {
		t.Fatalf("saved site is not the example:\n%s\n--- want\n%s", got, want)
	}
	if r := ztw(t, dir, "validate", "-c", "site.yaml"); r.code != 0 || !strings.Contains(r.stdout, `site "oslo-prod" is valid`) {
		t.Fatalf("validate: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(st, tui.DraftFile(filepath.Join(dir, "site.yaml")))); !os.IsNotExist(err) {
		t.Fatalf("a draft is left after saving: %v", err)
	}
}

// TestWizardInterruptedResumes leaves the wizard half-way with ctrl+c: the
// draft keeps every answer, and the next start offers it and resumes.
func TestWizardInterruptedResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	dir := t.TempDir()
	st := filepath.Join(dir, "state")
	p := startPane(t, dir, "wizard", "--empty", "--state", st)
	typeWelcomeToMesh(p)
	p.keys("a")
	p.wait("› node (new)")
	p.field("web")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.wait(filepath.Join(st, tui.DraftFile(filepath.Join(dir, "site.yaml")))[:20])
	p.keys("y")
	if code := p.exited(); code != "0" {
		t.Fatalf("exit %s:\n%s", code, p.screen())
	}
	draft := filepath.Join(st, tui.DraftFile(filepath.Join(dir, "site.yaml")))
	fi, err := os.Stat(draft)
	if err != nil {
		t.Fatalf("no draft after ctrl+c: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("draft mode %o", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(draft)
	for _, want := range []string{"site: oslo-prod", "common_name: Internal Root CA", "country: \"NO\"", "network: 10.100.0.0/24",
		"name: db", "endpoint: 192.168.1.100:51820", "address: 10.100.0.1", "name: web", "step: 2"} {
		if !strings.Contains(string(before), want) {
			t.Errorf("draft lacks %q:\n%s", want, before)
		}
	}

	p = startPane(t, dir, "wizard", "--empty", "--state", st)
	p.wait("Resume where you left off?")
	p.keys("y")
	p.wait("Resumed the draft")
	for _, want := range []string{"WireGuard mesh and nodes", "Mesh network 10.100.0.0/24", "db   10.100.0.1  192.168.1.100:51820", "web  10.100.0.2"} {
		p.wait(want)
	}
	p.keys("Escape")
	p.wait("Common name  Internal Root CA")
	for _, want := range []string{"Organization MyOrg", "Country      NO"} {
		p.wait(want)
	}
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()
	after, _ := os.ReadFile(draft)
	unstamped := func(b []byte) string {
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(l, "saved: ") && !strings.HasPrefix(l, "step: ") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if unstamped(after) != unstamped(before) || !strings.Contains(string(after), "step: 1") {
		t.Fatalf("the draft changed without edits:\n%s\n--- before\n%s", after, before)
	}
}

// TestWizardAccessibleFromStdin answers the plain prompts from a file, with
// no terminal: the same site comes out.
func TestWizardAccessibleFromStdin(t *testing.T) {
	dir := t.TempDir()
	answers, err := os.Open(filepath.Join("..", "..", "testdata", "wizard", "example-answers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer answers.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "wizard", "--empty", "--state", filepath.Join(dir, "state"), "-c", "new.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZTWIZARD_STATE=")
	cmd.Stdin = answers
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "new.yaml"))
	want, _ := steps.Example().Marshal()
	if !bytes.Equal(got, want) {
		t.Fatalf("saved site is not the example:\n%s\n%s", got, out)
	}
	if !strings.Contains(string(out), `site "oslo-prod" is valid`) {
		t.Fatalf("no validation in the output:\n%s", out)
	}
	if r := ztw(t, dir, "validate", "-c", "new.yaml"); r.code != 0 {
		t.Fatalf("validate: %+v", r)
	}

	// The same with --accessible on a terminal's standard output, and
	// TERM=dumb: still plain prompts, no escape sequences.
	answers.Seek(0, io.SeekStart)
	cmd = exec.CommandContext(ctx, bin, "wizard", "--empty", "--accessible", "--state", filepath.Join(dir, "state2"), "-c", "dumb.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZTWIZARD_STATE=", "TERM=dumb")
	cmd.Stdin = answers
	out, err = cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("\x1b[")) {
		t.Fatalf("%v\n%q", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "dumb.yaml")); !bytes.Equal(got, want) {
		t.Fatalf("--accessible site differs:\n%s", got)
	}
}

// TestWizardInputEndsExitsTwo stops the answers early: exit 2, a clear
// reason, and the draft kept.
func TestWizardInputEndsExitsTwo(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "wizard", "--empty", "--state", filepath.Join(dir, "state"), "-c", "x.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZTWIZARD_STATE=")
	cmd.Stdin = strings.NewReader("half-way\n")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "standard input ended before the wizard was done") {
		t.Fatalf("stderr: %s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "state", tui.DraftFile(filepath.Join(dir, "x.yaml")))); err != nil {
		t.Fatalf("no draft: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.yaml")); !os.IsNotExist(err) {
		t.Fatal("a half-typed site was saved")
	}
}

// TestWizardActions runs the Finish step's actions on the example site:
// save, render, review (the diff against this host), export, confirm.
func TestWizardActions(t *testing.T) {
	dir := t.TempDir()
	g := &globals{lockWait: 5 * time.Second, now: time.Now}
	a := &wizardActions{g: g, self: func(*steps.Site, string) bool { return true }}
	site := steps.Example()
	job := tui.Job{Site: site, StateDir: filepath.Join(dir, "state")}
	ctx := context.Background()

	if err := a.Save(site, filepath.Join(dir, "site.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := steps.Load(filepath.Join(dir, "site.yaml")); err != nil {
		t.Fatalf("saved site does not load: %v", err)
	}
	text, err := a.Review(ctx, job, "db")
	if err != nil {
		t.Fatal(err)
	}
	// The review is what the node receives and, as root on the node
	// itself, the diff against this host, which has none of the node's
	// files, table or interface.
	for _, want := range []string{"# What node db receives", "+ /etc/ssh/sshd_config.d/50-ztwizard.conf 0644", "# What applying node db to this host changes", "+++ /etc/ssh/sshd_config.d/50-ztwizard.conf",
		"@@ secret (mode 0600): new, content not shown @@", "policy drop", "wireguard zt0:", "allowed 10.100.0.2/32 endpoint 192.168.1.50:51820"} {
		if !strings.Contains(text, want) {
			t.Errorf("review lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "PRIVATE KEY") {
		t.Error("review shows key material")
	}
	summary, err := a.Render(ctx, job, "web", filepath.Join(dir, "web"))
	if err != nil || !strings.Contains(summary, "Wrote node web into") {
		t.Fatalf("render: %q, %v", summary, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "web", "etc", "nginx", "conf.d", "ztwizard-api.conf")); err != nil {
		t.Fatalf("render wrote no nginx file: %v", err)
	}
	ex, err := a.Export(ctx, job, "node", "web", filepath.Join(dir, "export"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Files) != 2 || !strings.HasSuffix(ex.Files[1], "web.png") || !bytes.Contains(ex.WireGuard, []byte("PrivateKey = ")) {
		t.Fatalf("node export: %+v", ex)
	}
	if fi, err := os.Stat(ex.Files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("wg-quick file: %v %v", fi, err)
	}
	ex, err = a.Export(ctx, job, "client", "service-worker-01", filepath.Join(dir, "export"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(ex.Files, " "), "service-worker-01.p12") {
		t.Fatalf("client export: %+v", ex)
	}
	// Apply changes this very host: it is proven in namespaces by the apply
	// tests. Confirm with nothing pending says so.
	if err := a.Confirm(ctx, job); !errors.Is(err, host.ErrNothingPending) {
		t.Fatalf("confirm with nothing pending: %v", err)
	}
	// Bake runs image.Bake with the same spec as `ztwizard bake`: proven by
	// booting images in the image tests.
}

// BenchmarkWizardFirstFrame times the real binary from start to its first
// full frame on a pseudo-terminal of 80x24.
func BenchmarkWizardFirstFrame(b *testing.B) {
	dir := b.TempDir()
	var total time.Duration
	for i := range b.N {
		st := filepath.Join(dir, fmt.Sprint(i))
		cmd := exec.Command(bin, "wizard", "--example", "--state", st, "-c", filepath.Join(dir, "none.yaml"))
		cmd.Env = append(os.Environ(), "TERM=xterm-256color", "ZTWIZARD_STATE=")
		start := time.Now()
		f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
		if err != nil {
			b.Fatal(err)
		}
		var seen []byte
		buf := make([]byte, 4096)
		for !bytes.Contains([]byte(ansi.Strip(string(seen))), []byte("Next: Certificate authority")) {
			f.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := f.Read(buf)
			if err != nil {
				b.Fatalf("no first frame: %v\n%q", err, seen)
			}
			seen = append(seen, buf[:n]...)
		}
		total += time.Since(start)
		cmd.Process.Kill()
		cmd.Wait()
		f.Close()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-frame")
}

// TestWizardBadInputInTerminal types a bad port into the real wizard: the
// problem shows under the field and Next stays on the step until it is
// fixed.
func TestWizardBadInputInTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	dir := t.TempDir()
	p := startPane(t, dir, "wizard", "--example", "--state", filepath.Join(dir, "state"))
	p.wait("Site name")
	p.next("Your own CA signs")
	p.next("A WireGuard mesh joins")
	p.next("nginx fronts each")
	p.keys("Escape")
	p.wait("Listen port  51820")
	p.keys("Tab", "C-u")
	p.field("70000")
	p.wait("✗ port 70000 is out of range 1-65535")
	lines := strings.Split(p.screen(), "\n")
	for i, l := range lines {
		if strings.Contains(l, "Listen port  70000") && !strings.Contains(strings.Join(lines[i+1:i+4], "\n"), "✗ port 70000 is out of range") {
			t.Fatalf("the problem is not beside the field:\n%s", p.screen())
		}
	}
	p.keys("C-n")
	p.wait("Fix the marked problems to go on")
	if s := p.screen(); !strings.Contains(s, "WireGuard mesh and nodes") || strings.Contains(s, "nginx fronts each") {
		t.Fatalf("Next left the step:\n%s", s)
	}
	p.keys("BSpace", "BSpace", "BSpace", "BSpace", "BSpace")
	p.field("51820")
	p.next("nginx fronts each")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	if code := p.exited(); code != "0" {
		t.Fatalf("exit %s", code)
	}
}

// TestWizardOpensExistingSite opens -c files: one with problems opens (the
// wizard shows them where they are fixed), one that is not a site does not.
func TestWizardOpensExistingSite(t *testing.T) {
	dir, st := workdir(t)
	bad := bytes.Replace(steps.ExampleYAML, []byte("address: 10.100.0.2"), []byte("address: 10.200.0.2"), 1)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), bad, 0o644)
	os.WriteFile(filepath.Join(dir, "typo.yaml"), append(append([]byte{}, steps.ExampleYAML...), "colour: blue\n"...), 0o644)

	r := ztw(t, dir, "wizard", "-c", "bad.yaml", "--state", st)
	if r.code != 0 || !strings.Contains(r.stdout, "10.200.0.2 is outside wireguard.network") || !strings.Contains(r.stdout, "(bad.yaml)") {
		t.Fatalf("wizard on a site with problems: %+v", r)
	}
	r = ztw(t, dir, "wizard", "-c", "typo.yaml", "--state", st)
	if r.code != 2 || !strings.Contains(r.stderr, "colour: unknown field") {
		t.Fatalf("wizard on a file that is not a site: %+v", r)
	}
	if _, err := os.Stat(st); !os.IsNotExist(err) {
		t.Fatal("opening a site wrote the state folder")
	}
}

// TestWizardAddressesAfterNodeRemoved removes a node after the addresses
// were given out: validate, the plain summary and the wizard's mesh step
// and review show the addresses render gives (the state's record), not a
// fresh allocation.
func TestWizardAddressesAfterNodeRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	dir, st := workdir(t)
	three := `nodes:
  - {name: gate, endpoint: "192.168.1.10:51820", peers: [web]}
  - {name: db,  endpoint: "192.168.1.100:51820", peers: [web]}
  - {name: web, endpoint: "192.168.1.50:51820",  peers: [db, gate], keepalive: 25}
services:`
	two := `nodes:
  - {name: db,  endpoint: "192.168.1.100:51820", peers: [web]}
  - {name: web, endpoint: "192.168.1.50:51820",  peers: [db], keepalive: 25}
services:`
	example := string(steps.ExampleYAML)
	nodes := example[strings.Index(example, "nodes:") : strings.Index(example, "services:")+len("services:")]
	write := func(block string) {
		if err := os.WriteFile(filepath.Join(dir, "site.yaml"), []byte(strings.Replace(example, nodes, block, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(three)
	if r := ztw(t, dir, "render", "-c", "site.yaml", "--state", st, "--node", "web", "--out", filepath.Join(dir, "web3")); r.code != 0 {
		t.Fatalf("render: %+v", r)
	}
	write(two)
	if r := ztw(t, dir, "render", "-c", "site.yaml", "--state", st, "--node", "db", "--out", filepath.Join(dir, "db")); r.code != 0 {
		t.Fatalf("render: %+v", r)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "db", "etc", "wireguard", "zt0.conf"))
	if err != nil || !strings.Contains(string(conf), "Address = 10.100.0.2/24") {
		t.Fatalf("render gives db another address than before: %v\n%s", err, conf)
	}
	r := ztw(t, dir, "validate", "-c", "site.yaml", "--state", st)
	if r.code != 0 || !strings.Contains(r.stdout, "node db                   mesh 10.100.0.2") || !strings.Contains(r.stdout, "node web                  mesh 10.100.0.3") {
		t.Fatalf("validate shows other addresses than render gives: %+v", r)
	}
	r = ztw(t, dir, "wizard", "-c", "site.yaml", "--state", st)
	if r.code != 0 || !strings.Contains(r.stdout, "web          10.100.0.3") {
		t.Fatalf("the summary shows other addresses than render gives: %+v", r)
	}

	p := startPane(t, dir, "wizard", "-c", "site.yaml", "--state", st)
	p.wait("Site name")
	p.next("Your own CA signs")
	p.next("A WireGuard mesh joins")
	p.wait("db   10.100.0.2")
	p.wait("web  10.100.0.3")
	for _, title := range []string{"nginx fronts each", "sshd trusts", "Each node drops", "Each database listens", "what each node receives"} {
		p.next(title)
	}
	p.wait("db 10.100.0.2")
	p.wait("web 10.100.0.3")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()
}

// TestWizardReviewNeedsNoDNS reviews nodes of a site where one endpoint is
// a name this machine cannot look up: every node's review is there, the
// name kept as it is; on the node itself only the comparison with this
// host fails, and says why beside the plan.
func TestWizardReviewNeedsNoDNS(t *testing.T) {
	dir := t.TempDir()
	site := steps.Example()
	site.Nodes[1].Endpoint = "web.nowhere.invalid:51820"
	job := tui.Job{Site: site, StateDir: filepath.Join(dir, "state")}
	a := &wizardActions{g: &globals{lockWait: 5 * time.Second, now: time.Now}, self: func(*steps.Site, string) bool { return false }}
	for _, node := range []string{"db", "web"} {
		text, err := a.Review(context.Background(), job, node)
		if err != nil {
			t.Fatalf("review of %s: %v", node, err)
		}
		if !strings.Contains(text, "# What node "+node+" receives") || strings.Contains(text, "this host") {
			t.Fatalf("review of %s:\n%s", node, text)
		}
		if node == "db" && !strings.Contains(text, "peer web (") || node == "db" && !strings.Contains(text, "endpoint web.nowhere.invalid:51820 (looked up when applied)") {
			t.Fatalf("the name is not kept:\n%s", text)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("the comparison with this host needs root")
	}
	a.self = func(*steps.Site, string) bool { return true }
	text, err := a.Review(context.Background(), job, "db")
	if err != nil || !strings.Contains(text, "# What node db receives") || !strings.Contains(text, "cannot be compared: ") || !strings.Contains(text, "web.nowhere.invalid") {
		t.Fatalf("review on the node: %v\n%s", err, text)
	}
}

// TestWizardDraftBelongsToItsFile leaves the wizard on a copy of the site
// with an edit: the wizard on the site itself offers no draft, and the
// wizard on the copy offers it, naming the copy and when it was saved.
func TestWizardDraftBelongsToItsFile(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	dir, st := workdir(t)
	os.WriteFile(filepath.Join(dir, "site-copy.yaml"), steps.ExampleYAML, 0o644)
	p := startPane(t, dir, "wizard", "-c", "site-copy.yaml", "--state", st)
	p.wait("Site name")
	p.keys("C-u")
	p.field("copy-lab")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()

	p = startPane(t, dir, "wizard", "-c", "site.yaml", "--state", st)
	p.wait("Site name")
	if s := p.screen(); strings.Contains(s, "Resume where you left off?") || strings.Contains(s, "copy-lab") {
		t.Fatalf("the draft of site-copy.yaml is offered for site.yaml:\n%s", s)
	}
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()

	p = startPane(t, dir, "wizard", "-c", "site-copy.yaml", "--state", st)
	p.wait("Resume where you left off?")
	p.wait("A draft of site-copy.yaml saved " + time.Now().UTC().Format("2006-01-02"))
	p.keys("y")
	p.wait("copy-lab")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()
}

// TestWizardUnlock checks passphrases against a real store whose CA keys
// were made encrypted: none and a wrong one are ErrLocked, the right one
// opens them, and nothing is written.
func TestWizardUnlock(t *testing.T) {
	dir := t.TempDir()
	a := &wizardActions{g: &globals{lockWait: 5 * time.Second, now: time.Now}}
	job := tui.Job{Site: steps.Example(), StateDir: filepath.Join(dir, "state")}
	ctx := context.Background()
	if err := a.Unlock(ctx, job); err != nil {
		t.Fatalf("no store yet: %v", err)
	}
	// A folder typed as the state folder is only read: its mode stays.
	typed := filepath.Join(dir, "typed")
	os.Mkdir(typed, 0o755)
	if err := a.Unlock(ctx, tui.Job{Site: job.Site, StateDir: typed}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(typed); fi.Mode().Perm() != 0o755 {
		t.Fatalf("checking a passphrase changed %s to %o", typed, fi.Mode().Perm())
	}
	job.Passphrase = []byte("pw-1234")
	if _, err := a.Keys(ctx, job); err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"", "wrong"} {
		job.Passphrase = []byte(pass)
		if err := a.Unlock(ctx, job); !errors.Is(err, tui.ErrLocked) {
			t.Fatalf("passphrase %q: %v, want ErrLocked", pass, err)
		}
	}
	job.Passphrase = []byte("pw-1234")
	if err := a.Unlock(ctx, job); err != nil {
		t.Fatalf("the right passphrase: %v", err)
	}
}

// TestWizardAsksHowToStart starts the wizard where there is no site file:
// it asks, and e starts from an empty site; with answers from a script it
// takes the example and says so.
func TestWizardAsksHowToStart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	dir := t.TempDir()
	p := startPane(t, dir, "wizard", "--state", filepath.Join(dir, "state"), "-c", "new.yaml")
	p.wait("Start from what?")
	p.wait("There is no new.yaml yet")
	p.keys("e")
	p.wait("ztwizard · new site · 1/9 Welcome")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()

	cmd := exec.Command(bin, "wizard", "--state", filepath.Join(dir, "state2"), "-c", "new.yaml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZTWIZARD_STATE=")
	cmd.Stdin = strings.NewReader("\n")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "There is no new.yaml yet: starting from the example site (--empty starts from an empty one).") {
		t.Fatalf("a script is not told:\n%s", out)
	}
}

// TestWizardBakeCancel starts a real bake from the wizard and cancels it
// with esc: the wizard says so within seconds and no image is left.
func TestWizardBakeCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end through tmux")
	}
	if os.Geteuid() != 0 {
		t.Fatal("baking needs root")
	}
	dir, st := workdir(t)
	p := startPane(t, dir, "wizard", "-c", "site.yaml", "--state", st)
	p.wait("Site name")
	p.keys("M-9")
	p.wait("Bake an appliance image")
	p.keys("Down", "Down", "Enter")
	p.wait("Finish › Bake an appliance image")
	for range 7 {
		p.keys("Tab")
	}
	p.wait("▸ [ Bake ]")
	p.keys("Enter")
	p.wait("esc cancel the bake")
	p.keys("Escape")
	p.wait("Cancelled: no image was written.")
	if _, err := os.Stat(filepath.Join(dir, "db.qcow2")); !os.IsNotExist(err) {
		t.Fatalf("a cancelled bake left its image: %v", err)
	}
	p.keys("Escape")
	p.wait("esc menu")
	p.keys("C-c")
	p.wait("Leave the wizard?")
	p.keys("y")
	p.exited()
}

// TestWizardAnsibleSameAsCommand writes the Ansible push from the wizard's
// Finish step and with `ztwizard ansible` for the same site, state, user
// and key: the same files, byte for byte and mode for mode. A refused
// user, or a passphrase the playbook could not read, writes nothing.
func TestWizardAnsibleSameAsCommand(t *testing.T) {
	dir, st := workdir(t)
	r := ztw(t, dir, "--state", st, "-c", "site.yaml", "ansible", "--out", "push", "--user", "admin", "--identity", "keys/admin")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	site, err := steps.Load(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := &wizardActions{g: &globals{lockWait: 5 * time.Second, now: time.Now}, binary: bin}
	job := tui.Job{Site: site, StateDir: st}
	ctx := context.Background()
	o := tui.AnsibleOptions{Dir: filepath.Join(dir, "wizard-push"), SitePath: filepath.Join(dir, "site.yaml"),
		User: "admin", Identity: filepath.Join(dir, "keys/admin")}
	out, err := a.Ansible(ctx, job, o)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range out.Files {
		names = append(names, filepath.Base(f))
		if filepath.Dir(f) != o.Dir {
			t.Errorf("wrote %s, not into %s", f, o.Dir)
		}
	}
	if want := []string{"inventory.yml", "push.yml", "known_hosts"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("wrote %q, want %q", names, want)
	}
	for _, dir := range []string{filepath.Join(dir, "push"), o.Dir} {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, want a 0700 folder", dir, err)
		}
	}
	cmdFiles, err := os.ReadDir(filepath.Join(dir, "push"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmdFiles) != len(names) {
		t.Fatalf("the command wrote %d files, the wizard %d", len(cmdFiles), len(names))
	}
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(dir, "push", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(o.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the command's:\n--- wizard\n%s\n--- command\n%s", name, got, want)
		}
		fw, _ := os.Stat(filepath.Join(dir, "push", name))
		fg, _ := os.Stat(filepath.Join(o.Dir, name))
		if fw.Mode() != fg.Mode() {
			t.Errorf("%s: mode %v, the command's %v", name, fg.Mode(), fw.Mode())
		}
	}

	for _, c := range []struct {
		name string
		job  tui.Job
		o    tui.AnsibleOptions
		want string
	}{
		{"bad user", job, tui.AnsibleOptions{Dir: filepath.Join(dir, "bad"), SitePath: o.SitePath, User: "a b", Identity: o.Identity}, `SSH user "a b": not an account name`},
		{"quote in identity", job, tui.AnsibleOptions{Dir: filepath.Join(dir, "bad"), SitePath: o.SitePath, Identity: `/a"b`}, `Identity file "/a\"b": holds '"'`},
		{"passphrase not in a file", tui.Job{Site: site, StateDir: st, Passphrase: []byte("pw-1234")},
			tui.AnsibleOptions{Dir: filepath.Join(dir, "bad"), SitePath: o.SitePath, Identity: o.Identity}, "--passphrase-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := a.Ansible(ctx, c.job, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want an error with %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
				t.Fatalf("a refused push made its folder: %v", err)
			}
		})
	}
}

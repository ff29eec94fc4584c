package tui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ztwizard/steps"
)

// answers are the line prompts' answers that type the design's example
// site from an empty start.
func answers(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "wizard", "example-answers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func runPlain(t *testing.T, dir, in string, opts ...func(*Options)) (string, error) {
	t.Helper()
	var out bytes.Buffer
	o := Options{Site: Empty(), SitePath: filepath.Join(dir, "site.yaml"), StateDir: filepath.Join(dir, "state"),
		Actions: &fakeActions{}, In: strings.NewReader(in), Out: &out, Accessible: true,
		Now: func() time.Time { return clock }}
	for _, f := range opts {
		f(&o)
	}
	err := Run(context.Background(), o)
	return out.String(), err
}

// TestAccessibleTypesTheExample answers the plain prompts: the saved site is
// the design's example, byte for byte.
func TestAccessibleTypesTheExample(t *testing.T) {
	dir := t.TempDir()
	out, err := runPlain(t, dir, answers(t))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "site.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := steps.Example().Marshal()
	if !bytes.Equal(got, want) {
		t.Fatalf("saved site differs from the example:\n%s\n--- want\n%s", got, want)
	}
	for _, s := range []string{"== Welcome ==", "== Databases ==", "The site is valid.", `site "oslo-prod" is valid: 2 nodes`} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("plain prompts hold escape sequences:\n%q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", DraftFile(filepath.Join(dir, "site.yaml")))); !os.IsNotExist(err) {
		t.Errorf("the draft is left after the site was saved: %v", err)
	}
}

// TestAccessibleRepromptsBadAnswers gives a bad port and a principal with a
// comma first: each is refused with its reason and asked again.
func TestAccessibleRepromptsBadAnswers(t *testing.T) {
	in := answers(t)
	in = strings.Replace(in, "10.100.0.0/24\n\n", "10.100.0.0/24\n70000\n\n", 1)
	in = strings.Replace(in, "alice\nroot devops\n", "alice\nroot,devops\nroot devops\n", 1)
	in = strings.Replace(in, "db\n192.168.1.100:51820\n10.100.0.1\n", "db\n192.168.1.100:51820\n10.200.0.1\n10.100.0.1\n", 1)
	dir := t.TempDir()
	out, err := runPlain(t, dir, in)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, s := range []string{
		"error: port 70000 is out of range 1-65535",
		`error: principal "root,devops" contains a comma`,
		"error: 10.200.0.1 is outside Mesh network 10.100.0.0/24",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	got, _ := os.ReadFile(filepath.Join(dir, "site.yaml"))
	if want, _ := steps.Example().Marshal(); !bytes.Equal(got, want) {
		t.Fatalf("saved site differs from the example:\n%s", got)
	}
}

// TestAccessibleInputEnds stops half-way: the wizard says so and keeps the
// answers in the draft, which a later run resumes when told to.
func TestAccessibleInputEnds(t *testing.T) {
	dir := t.TempDir()
	all := answers(t)
	half := all[:strings.Index(all, "service-worker-01")]
	out, err := runPlain(t, dir, half)
	if !errors.Is(err, ErrInputEnded) {
		t.Fatalf("err %v, want ErrInputEnded\n%s", err, out)
	}
	d, err := loadDraft(draftFor(filepath.Join(dir, "state"), filepath.Join(dir, "site.yaml")))
	if err != nil || d == nil {
		t.Fatalf("no draft: %v", err)
	}
	if d.Site.Site != "oslo-prod" || len(d.Site.Nodes) != 2 || d.Site.Nodes[0].Peers[0] != "web" {
		t.Fatalf("draft lost answers: %+v", d.Site)
	}
	// Enter keeps the 11 answers of Welcome, the CA and the mesh; done
	// with the nodes; change the unnamed client; then the rest.
	keep := strings.Repeat("\n", 11) + "4\n" + "2\n1\n" + all[strings.Index(all, "service-worker-01"):]
	out, err = runPlain(t, dir, keep, func(o *Options) { o.Resume = "yes" })
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "site.yaml"))
	if want, _ := steps.Example().Marshal(); !bytes.Equal(got, want) {
		t.Fatalf("resumed site differs from the example:\n%s\n%s", got, out)
	}
}

// TestAccessibleInterrupted stops the wizard (ctrl+c) while it waits for an
// answer: it returns at once and keeps the answers so far.
func TestAccessibleInterrupted(t *testing.T) {
	dir := t.TempDir()
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Site: Empty(), StateDir: dir, Actions: &fakeActions{}, In: r, Out: io.Discard,
			Accessible: true, Now: func() time.Time { return clock }})
	}()
	io.WriteString(w, "half-way\n\n")
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("err %v, want ErrInterrupted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the wizard did not stop")
	}
	if d, err := loadDraft(draftFor(dir, "site.yaml")); err != nil || d == nil || d.Site.Site != "half-way" {
		t.Fatalf("draft: %+v %v", d, err)
	}
}

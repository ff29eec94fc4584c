package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"charm.land/huh/v2"
	"golang.org/x/term"

	"ztwizard/steps"
)

// ErrInputEnded is returned when standard input ends before the wizard is
// done; the answers so far are in the draft.
var ErrInputEnded = errors.New("standard input ended before the wizard was done")

// ErrInterrupted is returned when the wizard is stopped (ctrl+c) while it
// asks; the answers so far are in the draft.
var ErrInterrupted = errors.New("the wizard was interrupted")

// asker puts the wizard's steps as plain line prompts (huh's accessible
// mode), for serial consoles, screen readers and scripts.
type asker struct {
	m        *model
	in       *lineReader
	out      io.Writer
	terminal bool // the answers come from a terminal
	fd       int  // that terminal
	step     stepID
}

// runAccessible is the whole wizard as line prompts: the steps in order,
// a review, then the site is saved and checked.
func runAccessible(ctx context.Context, o Options) error {
	m := newModel(ctx, o)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &asker{m: m, in: newLineReader(ctx, o.In), out: o.Out}
	if f, ok := o.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		a.terminal, a.fd = true, int(f.Fd())
	}
	if !a.terminal && a.in.empty() {
		// Nothing to answer with (input from /dev/null): show the site.
		fmt.Fprint(a.out, Summary(m.site, o.Source, m.sess.stateDir))
		a.say("(no answers on standard input: nothing was changed)")
		return nil
	}
	a.say("ztwizard wizard: the site step by step. Enter keeps the value in brackets; - clears it.")
	resumed := false
	if d, ok := m.dialog.(*draftDialog); ok {
		m.dialog = nil
		var err error
		if resumed, err = a.offerDraft(d.d); err != nil {
			return err
		}
	}
	m.dialog = nil
	if o.askStart && !resumed {
		if err := a.askStart(); err != nil {
			return err
		}
	}
	err := a.steps(stepID(0))
	if errors.Is(err, ErrInputEnded) || errors.Is(err, ErrInterrupted) {
		m.saveDraft()
		if m.drafted {
			return fmt.Errorf("%w; your answers are kept in %s", err, m.draftAt.path())
		}
		return err
	}
	if err != nil {
		return err
	}
	return a.finish()
}

// askStart asks, on a terminal, whether to start from an empty site or the
// example, there being no site file yet; answers from a script start from
// the example, as they always did.
func (a *asker) askStart() error {
	if !a.terminal {
		a.say("There is no %s yet: starting from the example site (--empty starts from an empty one).", a.m.sess.sitePath)
		return nil
	}
	from := "example"
	sel := huh.NewSelect[string]().Title(fmt.Sprintf("There is no %s yet. Start from", a.m.sess.sitePath)).
		Options(huh.NewOption("the example site, to change", "example"), huh.NewOption("an empty site", "empty")).Value(&from)
	if err := a.run(sel); err != nil {
		return err
	}
	if from == "empty" {
		a.m.start(Empty(), "from scratch")
	}
	return nil
}

// offerDraft asks whether to resume a draft (or follows Options.Resume);
// true when it was resumed.
func (a *asker) offerDraft(d *draft) (bool, error) {
	resume := a.m.o.Resume == "yes"
	switch {
	case a.m.o.Resume != "":
	case a.terminal:
		resume = true
		c := huh.NewConfirm().Title(fmt.Sprintf("Resume the draft of %s saved %s (site %q)?", a.m.draftAt.site, d.Saved.Local().Format("2006-01-02 15:04"), d.Site.Site)).Value(&resume)
		if err := a.run(c); err != nil {
			return false, err
		}
	default:
		a.say("A draft of %s saved %s is in %s; it is not resumed when the answers come from a script (--resume resumes it).", a.m.draftAt.site, d.Saved.Local().Format("2006-01-02 15:04"), a.m.draftAt.path())
	}
	if resume {
		a.m.resume(d)
		a.say("Resumed the draft; its answers are the values in brackets.")
	}
	return resume, nil
}

// steps asks every step from first on, then reviews the site; a step that
// still has problems is asked again.
func (a *asker) steps(first stepID) error {
	for id := first; id < stepReview; id++ {
		if err := a.page(id); err != nil {
			return err
		}
	}
	a.step = stepReview
	a.m.cur = stepReview
	a.say("\n== Review ==")
	a.m.sess.refreshRecord()
	a.say("%s", strings.TrimRight(overview(a.m.site, a.m.sess.record), "\n"))
	if len(a.m.errs) == 0 {
		a.say("The site is valid.")
		return nil
	}
	a.say("The site still has %s:", plural(len(a.m.errs), "problem"))
	for _, e := range a.m.errs {
		a.say("  %s: %s", stepNames[ownerOf(e)].long, problemText(a.m.site, e))
	}
	return a.steps(ownerOf(a.m.errs[0]))
}

// page asks one step's fields until the step has no problems.
func (a *asker) page(id stepID) error {
	p := a.m.pages[id].(*formPage)
	a.step, a.m.cur = id, id
	a.m.reached = max(a.m.reached, id)
	a.say("\n== %s ==\n%s", stepNames[id].long, p.intro)
	for {
		for _, fl := range p.form.fields {
			if _, ok := fl.(*buttonField); ok {
				continue
			}
			fl.reload(a.env())
			if err := fl.ask(a); err != nil {
				return err
			}
		}
		a.m.dirty = true
		a.m.saveDraft()
		probs := p.blocking(a.m)
		if len(probs) == 0 {
			return nil
		}
		for _, pr := range probs {
			a.say("  error: %s", pr)
		}
		a.say("Once more, for this step (Enter keeps an answer):")
	}
}

// finish saves the site where the admin says and checks the file.
func (a *asker) finish() error {
	a.step, a.m.cur = stepFinish, stepFinish
	a.say("\n== Finish ==")
	path := a.m.sess.sitePath
	typed := path
	in := huh.NewInput().Title(prompt("Save the site to", path, "")).Value(&typed)
	if err := a.run(in); err != nil {
		return err
	}
	path = answer(typed, path)
	if a.m.o.Actions == nil {
		return errors.New("wizard: nowhere to save the site")
	}
	site := a.m.job().Site
	if err := a.m.o.Actions.Save(site, path); err != nil {
		return err
	}
	loaded, err := steps.Load(path)
	if err != nil {
		return err
	}
	a.m.dirty = false
	if err := removeDraft(a.m.draftAt); err != nil {
		a.say("  note: %v", err)
	}
	a.say("Saved %s: site %q is valid: %s, %s, %s, %s, %s.", path, loaded.Site,
		plural(len(loaded.Nodes), "node"), plural(len(loaded.Services), "service"), plural(len(loaded.Databases), "database"),
		plural(len(loaded.Clients), "client"), plural(len(loaded.SSH.Users), "SSH user"))
	if a.m.sess.passphrase != "" {
		// The passphrase is never written down: it is used now, to make
		// the CA keys encrypted, or it would be lost.
		msg, err := a.m.o.Actions.Keys(a.m.ctx, a.m.job())
		if err != nil {
			return err
		}
		a.say("%s", msg)
	}
	a.say("Next: ztwizard render -c %s --node NODE --out DIR writes a node's files.", path)
	return nil
}

package tui

import (
	"fmt"
	"strings"

	"charm.land/huh/v2"
	"charm.land/lipgloss/v2"

	"ztwizard/steps"
)

// plainTheme draws prompts without colour or decoration.
var plainTheme = huh.ThemeFunc(func(dark bool) *huh.Styles {
	s := huh.ThemeBase(dark)
	plain := lipgloss.NewStyle()
	s.Focused.Title, s.Blurred.Title = plain, plain
	s.Focused.Description, s.Blurred.Description = plain, plain
	return s
})

// run puts one huh field as a line prompt.
func (a *asker) run(f huh.Field) error {
	err := huh.NewForm(huh.NewGroup(f)).WithAccessible(true).WithTheme(plainTheme).
		WithInput(a.in).WithOutput(a.out).Run()
	if err != nil {
		return fmt.Errorf("wizard: %w", err)
	}
	if a.in.interrupted {
		return ErrInterrupted
	}
	if a.in.eof {
		return ErrInputEnded
	}
	return nil
}

func (a *asker) say(format string, args ...any) { fmt.Fprintf(a.out, format+"\n", args...) }

// env is the fields' view of the site on the current step.
func (a *asker) env() *env { return a.m.env(a.step) }

// check is what the admin's answer s to field f would leave wrong: the
// field's own problems on a copy of the site with the answer in it.
func (a *asker) check(f *fieldBase, set func(*steps.Site, string) error, s string) error {
	trial := a.m.site.Clone()
	if err := set(trial, s); err != nil {
		return fmt.Errorf("  error: %w", err)
	}
	for _, fe := range validate(trial) {
		if f.path != "" && under(fe.Path, f.path) && ownerOf(fe) == a.step {
			return fmt.Errorf("  error: %s", plainPaths(trial, fe.Msg))
		}
	}
	return nil
}

// answer turns what was typed into the value: empty keeps the current
// value, "-" clears it.
func answer(typed, current string) string {
	switch t := strings.TrimSpace(typed); t {
	case "":
		return current
	case "-":
		return ""
	default:
		return t
	}
}

// prompt is a field's question: its label and, in brackets, what Enter keeps.
func prompt(label, current, hint string) string {
	switch {
	case current != "":
		return fmt.Sprintf("%s [%s]:", label, current)
	case hint != "":
		return fmt.Sprintf("%s [%s]:", label, hint)
	}
	return label + ":"
}

func (a *asker) text(f *textField) error {
	cur := f.bind.get(a.m.site)
	hint := ""
	if f.hint != nil {
		hint = f.hint(a.env())
	}
	if f.confirms {
		return nil
	}
	if f.secret {
		if cur != "" {
			cur = "kept"
		}
		return a.secret(f, hint)
	}
	typed := cur
	in := huh.NewInput().Title(prompt(f.label, cur, hint)).Value(&typed).Validate(func(s string) error {
		return a.check(&f.fieldBase, f.bind.set, answer(s, cur))
	})
	if err := a.run(in); err != nil {
		return err
	}
	f.perr = f.bind.set(a.m.site, answer(typed, cur))
	a.m.errs = validate(a.m.site)
	return nil
}

// secret asks for a passphrase without echo, on a terminal only, and a
// second time to be sure of it. It is read through the same reader as
// every other answer, so nothing else takes the line and ctrl+c ends it.
func (a *asker) secret(f *textField, hint string) error {
	if !a.terminal {
		a.say("%s: not asked (standard input is not a terminal); give it with --passphrase-file.", f.label)
		return nil
	}
	for {
		pw, err := a.hiddenLine(prompt(f.label, "", hint))
		if err != nil || pw == "" {
			return err
		}
		again, err := a.hiddenLine("Again, to be sure:")
		if err != nil {
			return err
		}
		if again == pw {
			f.perr = f.bind.set(a.m.site, pw)
			return nil
		}
		a.say("  error: the two differ; once more (Enter alone keeps none).")
	}
}

// hiddenLine reads one line from the terminal with its echo off. The echo
// goes off before the prompt shows: what is typed (or pasted) as soon as
// it shows is never echoed.
func (a *asker) hiddenLine(title string) (string, error) {
	restore, err := echoOff(a.fd)
	if err != nil {
		return "", fmt.Errorf("wizard: %s %w", title, err)
	}
	fmt.Fprintf(a.out, "%s ", title)
	line, ok := a.in.line()
	restore()
	fmt.Fprintln(a.out)
	if !ok {
		if a.in.interrupted {
			return "", ErrInterrupted
		}
		return "", ErrInputEnded
	}
	return line, nil
}

func (a *asker) choose(f *selectField) error {
	e := a.env()
	opts := f.options(e)
	if len(opts) == 0 {
		a.say("%s: nothing to choose yet.", f.label)
		return nil
	}
	cur := *f.ptr(a.m.site)
	curLabel := cur
	var hopts []huh.Option[string]
	for _, o := range opts {
		hopts = append(hopts, huh.NewOption(o.label, o.value))
		if o.value == cur {
			curLabel = o.label
		}
	}
	v := cur
	if !hasOption(opts, v) {
		v = opts[0].value
	}
	sel := huh.NewSelect[string]().Title(strings.TrimSuffix(prompt(f.label, curLabel, ""), ":")).Options(hopts...).Value(&v)
	if err := a.run(sel); err != nil {
		return err
	}
	*f.ptr(a.m.site) = v
	if f.onSet != nil {
		f.onSet(a.env())
	}
	a.m.errs = validate(a.m.site)
	return nil
}

func (a *asker) names(f *multiField) error {
	cur := strings.Join(*f.ptr(a.m.site), " ")
	opts := f.options(a.env())
	label := f.label
	if len(opts) == 0 && cur == "" {
		a.say("%s: none (%s).", f.label, f.empty)
		return nil
	}
	label += " (separated by spaces, of: " + strings.Join(opts, " ") + ")"
	if f.implied != nil {
		if from := f.implied(a.env()); len(from) > 0 {
			a.say("%s: also %s, from their side (a link works both ways).", f.label, strings.Join(from, ", "))
		}
	}
	set := func(s *steps.Site, v string) error {
		*f.ptr(s) = splitWords(v, true)
		return nil
	}
	typed := cur
	in := huh.NewInput().Title(prompt(label, cur, "none")).Value(&typed).Validate(func(s string) error {
		return a.check(&f.fieldBase, set, answer(s, cur))
	})
	if err := a.run(in); err != nil {
		return err
	}
	_ = set(a.m.site, answer(typed, cur))
	a.m.errs = validate(a.m.site)
	return nil
}

// list asks what to do with a list until the admin is done with it.
func (a *asker) list(f *listField) error {
	noun := f.kind.noun()
	for {
		n := f.kind.count(a.m.site)
		var names []string
		for i := range n {
			names = append(names, orNew(f.kind.name(a.m.site, i)))
		}
		if n == 0 {
			a.say("%s: none yet.", f.label)
		} else {
			a.say("%s: %s.", f.label, strings.Join(names, ", "))
		}
		opts := []huh.Option[string]{huh.NewOption("Add a "+noun, "add")}
		if n > 0 {
			opts = append(opts, huh.NewOption("Change a "+noun, "change"), huh.NewOption("Remove a "+noun, "remove"))
		}
		opts = append(opts, huh.NewOption("Done with "+strings.ToLower(f.label), "done"))
		what := "done"
		if n == 0 {
			what = "add"
		}
		if err := a.run(huh.NewSelect[string]().Title("What next?").Options(opts...).Value(&what)); err != nil {
			return err
		}
		switch what {
		case "add":
			i := f.kind.add(a.env())
			if err := a.item(f, i); err != nil {
				return err
			}
		case "change", "remove":
			i, err := a.pick(f, names)
			if err != nil {
				return err
			}
			if what == "remove" {
				uses := f.kind.uses(a.m.site, i)
				f.kind.remove(a.m.site, i)
				a.m.errs = validate(a.m.site)
				a.say("Removed %s %s.", noun, names[i])
				for _, u := range uses {
					a.say("  note: %s", u)
				}
				continue
			}
			if err := a.item(f, i); err != nil {
				return err
			}
		case "done":
			blocking, _ := f.shown(a.env())
			if len(blocking) == 0 {
				return nil
			}
			for _, p := range blocking {
				a.say("  error: %s", p)
			}
		}
	}
}

// pick asks which item of a list.
func (a *asker) pick(f *listField, names []string) (int, error) {
	var opts []huh.Option[int]
	for i, n := range names {
		opts = append(opts, huh.NewOption(n, i))
	}
	i := 0
	if err := a.run(huh.NewSelect[int]().Title("Which " + f.kind.noun() + "?").Options(opts...).Value(&i)); err != nil {
		return 0, err
	}
	return i, nil
}

// item asks every field of item i until it has no problems.
func (a *asker) item(f *listField, i int) error {
	before := f.kind.snapshot(a.m.site, i)
	for {
		fields := f.kind.fields(i)
		for _, fl := range fields {
			fl.reload(a.env())
			if err := fl.ask(a); err != nil {
				return err
			}
		}
		var probs []string
		for _, fl := range fields {
			if err := fl.local(); err != nil {
				probs = append(probs, err.Error())
			}
		}
		for _, fe := range ownedBy(a.m.errs, a.step) {
			if under(fe.Path, f.itemPath(i)) {
				probs = append(probs, problemText(a.m.site, fe))
			}
		}
		if len(probs) == 0 {
			f.kind.renamed(a.m.site, i, before)
			a.m.errs = validate(a.m.site)
			return nil
		}
		for _, p := range probs {
			a.say("  error: %s", p)
		}
		a.say("Once more, for this %s (Enter keeps an answer):", f.kind.noun())
	}
}

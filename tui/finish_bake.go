package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/progress"
	tea "charm.land/bubbletea/v2"
)

// bakeDialog bakes an image, with a progress bar through its stages.
type bakeDialog struct {
	node        string
	opts        BakeOptions
	cancel      context.CancelFunc // stops the bake
	cancelled   bool
	stage       string
	done, total int
	stages      []string
	ch          chan tea.Msg
	over        bool
	err         error
	bar         progress.Model
}

// Messages of a running bake.
type (
	bakeStageMsg struct {
		stage       string
		done, total int
	}
	bakeDoneMsg struct{ err error }
)

// start runs the bake, its progress coming back as messages.
func (d *bakeDialog) start(m *model) tea.Cmd {
	d.bar = progress.New(progress.WithoutPercentage(), progress.WithColors(m.th.accent), progress.WithFillCharacters('█', '░'))
	d.ch = make(chan tea.Msg, 64)
	ctx, cancel := context.WithCancel(m.ctx)
	d.cancel = cancel
	job, a, ch, node, opts := m.job(), m.o.Actions, d.ch, d.node, d.opts
	go func() {
		err := a.Bake(ctx, job, node, opts, func(stage string, done, total int) {
			select {
			case ch <- bakeStageMsg{stage, done, total}:
			default: // the dialog is behind: it shows a later stage
			}
		})
		cancel()
		ch <- bakeDoneMsg{err}
	}()
	return next(ch)
}

func (d *bakeDialog) update(m *model, msg tea.Msg) (tea.Cmd, bool) {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch {
		case d.over && key.Matches(msg, keys.Close):
			return nil, true
		case !d.over && (msg.String() == "esc" || msg.String() == "ctrl+c"):
			d.cancelled = true
			d.cancel()
		}
	case bakeStageMsg:
		if msg.stage != d.stage && d.stage != "" {
			d.stages = append(d.stages, d.stage)
		}
		d.stage, d.done, d.total = msg.stage, msg.done, msg.total
		return next(d.ch), false
	case bakeDoneMsg:
		d.over, d.err = true, msg.err
		if d.stage != "" && msg.err == nil {
			d.stages = append(d.stages, d.stage)
			d.stage = ""
		}
		// The Finish log keeps the outcome once the box is closed.
		if p, ok := m.pages[stepFinish].(*finishPage); ok {
			switch {
			case d.cancelled && msg.err != nil:
				p.result(m, "bake", errors.New("bake of "+d.opts.Out+" cancelled: no image was written"), "")
			default:
				p.result(m, "bake", msg.err, "Baked %s.", d.opts.Out)
			}
		}
	}
	return nil, false
}

func (d *bakeDialog) view(m *model, width int) string {
	var b strings.Builder
	what := "node " + d.node
	if d.opts.Golden {
		what = "a golden image"
	}
	b.WriteString(m.th.title.Render("Bake "+what) + "\n")
	b.WriteString(m.th.desc.Render(truncate("into "+d.opts.Out, width)) + "\n\n")
	for _, s := range d.stages {
		b.WriteString(m.th.okText.Render("✓ ") + truncate(s, width-2) + "\n")
	}
	pct := 0.0
	if d.total > 0 {
		pct = float64(d.done) / float64(d.total)
	}
	if d.stage != "" {
		b.WriteString(truncate(d.stage, width) + "\n")
	}
	if !d.over || d.err == nil {
		d.bar.SetWidth(max(width-7, 10))
		if d.over {
			pct = 1
		}
		b.WriteString(d.bar.ViewAs(pct) + fmt.Sprintf(" %3.0f%%", pct*100) + "\n")
	}
	switch {
	case !d.over && d.cancelled:
		b.WriteString(m.th.noteText.Render("Cancelling…") + "\n")
	case !d.over:
	case d.cancelled && d.err != nil:
		b.WriteString(m.th.noteText.Render(strings.Join(wrap("Cancelled: no image was written.", width), "\n")) + "\n")
	case errors.Is(d.err, ErrNotAvailable):
		b.WriteString(m.th.noteText.Render(strings.Join(wrap(plainly(d.err), width), "\n")) + "\n\n")
		b.WriteString(m.th.desc.Render(strings.Join(wrap("Nothing was written.", width), "\n")) + "\n")
	case d.err != nil:
		b.WriteString(m.th.errText.Render(strings.Join(wrap("✗ "+d.err.Error(), width), "\n")) + "\n")
	default:
		b.WriteString(m.th.okText.Render(truncate("Baked "+d.opts.Out+".", width)) + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func (d *bakeDialog) keys() []key.Binding {
	if d.over {
		return []key.Binding{keys.Close}
	}
	return []key.Binding{key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel the bake"))}
}

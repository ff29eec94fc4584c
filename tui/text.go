package tui

import (
	"strconv"
	"strings"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// truncate cuts s to width cells, ending in "…" when cut.
func truncate(s string, width int) string {
	if width <= 0 {
		return ""
	}
	return ansi.Truncate(s, width, "…")
}

// wrap breaks s into lines of at most width cells, at spaces where it can.
func wrap(s string, width int) []string {
	if width <= 0 {
		return nil
	}
	return strings.Split(ansi.Wrap(s, width, " "), "\n")
}

// wrapItems lays styled items out left to right with two spaces between
// them, starting a new line when the next would not fit.
func wrapItems(items []string, width int) string {
	var lines []string
	cur, curW := "", 0
	for _, it := range items {
		w := lipgloss.Width(it)
		if curW > 0 && curW+2+w > width {
			lines = append(lines, cur)
			cur, curW = "", 0
		}
		if curW > 0 {
			cur += "  "
			curW += 2
		}
		cur += it
		curW += w
	}
	return strings.Join(append(lines, cur), "\n")
}

// pad makes s exactly width cells wide, cutting or filling with spaces.
func pad(s string, width int) string {
	s = truncate(s, width)
	if w := lipgloss.Width(s); w < width {
		s += strings.Repeat(" ", width-w)
	}
	return s
}

func itoa(n int) string { return strconv.Itoa(n) }

func repeat(r rune, n int) string { return strings.Repeat(string(r), max(n, 0)) }

// plural is "1 node" or "2 nodes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return itoa(n) + " " + noun + "s"
}

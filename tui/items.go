package tui

import (
	"fmt"
	"slices"

	"ztwizard/steps"
)

// itemKind is what a list field knows about its items: nodes, services,
// clients, SSH users or databases.
type itemKind interface {
	noun() string                                   // "node"
	path() string                                   // "nodes"
	count(s *steps.Site) int                        // how many there are
	add(e *env) int                                 // appends a new item, returns its index
	remove(s *steps.Site, i int)                    // removes item i and mentions of it
	snapshot(s *steps.Site, i int) any              // a copy of item i
	restore(s *steps.Site, i int, v any)            // puts a snapshot back
	renamed(s *steps.Site, i int, before any)       // follows a renamed item elsewhere
	name(s *steps.Site, i int) string               // item i's name
	columns(e *env, i int) []string                 // item i as a row of the list
	fields(i int) []field                           // the editor of item i
	describe(s *steps.Site, i int) (string, string) // the editor's title and line
	uses(s *steps.Site, i int) []string             // what else in the site needs item i, and where
}

// items implements itemKind for one list of the site.
type items[T any] struct {
	nounS, pathS string
	list         func(*steps.Site) *[]T
	clone        func(T) T
	fresh        func(e *env) T
	nameOf       func(T) string
	cols         func(e *env, i int, it T) []string
	editor       func(i int) []field
	intro        string
	// forget removes mentions of a removed item elsewhere in the site;
	// follow renames them.
	forget func(s *steps.Site, name string)
	follow func(s *steps.Site, old, name string)
	// usedBy says what else in the site needs the item called name and on
	// which step: what removing it breaks or drops.
	usedBy func(s *steps.Site, name string) []string
}

func (k *items[T]) uses(s *steps.Site, i int) []string {
	name := k.name(s, i)
	if k.usedBy == nil || name == "" {
		return nil
	}
	return k.usedBy(s, name)
}

func (k *items[T]) noun() string                     { return k.nounS }
func (k *items[T]) path() string                     { return k.pathS }
func (k *items[T]) count(s *steps.Site) int          { return len(*k.list(s)) }
func (k *items[T]) fields(i int) []field             { return k.editor(i) }
func (k *items[T]) name(s *steps.Site, i int) string { return k.nameOf((*k.list(s))[i]) }

func (k *items[T]) add(e *env) int {
	l := k.list(e.site)
	*l = append(*l, k.fresh(e))
	return len(*l) - 1
}

func (k *items[T]) remove(s *steps.Site, i int) {
	l := k.list(s)
	name := k.nameOf((*l)[i])
	*l = slices.Delete(*l, i, i+1)
	if len(*l) == 0 {
		*l = nil
	}
	if k.forget == nil || name == "" || slices.ContainsFunc(*l, func(it T) bool { return k.nameOf(it) == name }) {
		return
	}
	k.forget(s, name)
}

func (k *items[T]) snapshot(s *steps.Site, i int) any { return k.clone((*k.list(s))[i]) }

func (k *items[T]) restore(s *steps.Site, i int, v any) { (*k.list(s))[i] = k.clone(v.(T)) }

func (k *items[T]) renamed(s *steps.Site, i int, before any) {
	old, cur := k.nameOf(before.(T)), k.nameOf((*k.list(s))[i])
	if k.follow != nil && old != "" && old != cur {
		k.follow(s, old, cur)
	}
}

func (k *items[T]) columns(e *env, i int) []string { return k.cols(e, i, (*k.list(e.site))[i]) }

func (k *items[T]) describe(s *steps.Site, i int) (string, string) {
	n := k.name(s, i)
	if n == "" {
		n = "(new)"
	}
	return fmt.Sprintf("%s %s", k.nounS, n), k.intro
}

// rename replaces old by name in a list of names.
func rename(list []string, old, name string) {
	for i, v := range list {
		if v == old {
			list[i] = name
		}
	}
}

// without returns the list without name, nil when empty.
func without(list []string, name string) []string {
	out := slices.DeleteFunc(slices.Clone(list), func(v string) bool { return v == name })
	if len(out) == 0 {
		return nil
	}
	return out
}

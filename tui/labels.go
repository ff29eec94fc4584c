package tui

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"ztwizard/steps"
)

// labelTable maps the site's paths to the labels the wizard shows for
// them, read from the steps' own fields, so that a problem speaks of
// "Admin networks" rather than ssh.admin_cidrs.
type labelTable struct {
	top   map[string]string // "ssh.admin_cidrs": "Admin networks"
	paths []string          // top's keys, longest first
	items map[string]itemLabels
}

// itemLabels are the labels of one list's items ("nodes").
type itemLabels struct {
	noun   string
	fields map[string]string // "address": "Mesh address"
	name   func(s *steps.Site, i int) (string, bool)
}

var (
	labelsOnce sync.Once
	labels     labelTable
)

// learnLabels reads the labels of the pages' fields, once.
func learnLabels(pages []page) {
	labelsOnce.Do(func() {
		labels = labelTable{top: map[string]string{}, items: map[string]itemLabels{}}
		for _, pg := range pages {
			fp, ok := pg.(*formPage)
			if !ok {
				continue
			}
			for _, fl := range fp.form.fields {
				b := fl.info()
				if l, ok := fl.(*listField); ok {
					il := itemLabels{noun: l.kind.noun(), fields: map[string]string{}, name: itemName(l.kind)}
					prefix := l.kind.path() + "[0]."
					for _, f := range l.kind.fields(0) {
						if p, ok := strings.CutPrefix(f.info().path, prefix); ok {
							il.fields[p] = f.info().label
						}
					}
					labels.items[l.kind.path()] = il
					continue
				}
				if b.path != "" {
					labels.top[b.path] = b.label
				}
			}
		}
		for p := range labels.top {
			labels.paths = append(labels.paths, p)
		}
		sort.Slice(labels.paths, func(i, j int) bool { return len(labels.paths[i]) > len(labels.paths[j]) })
	})
}

// itemName names item i of kind in a site, when it is there.
func itemName(kind itemKind) func(s *steps.Site, i int) (string, bool) {
	return func(s *steps.Site, i int) (string, bool) {
		if s == nil || i < 0 || i >= kind.count(s) {
			return "", false
		}
		return kind.name(s, i), true
	}
}

// itemPath is a path into a list: "nodes[1].address".
var itemPath = regexp.MustCompile(`\b([a-z_]+)\[(\d+)\](?:\.([a-z_]+))?`)

// where names a site path as the wizard shows it: "Admin networks", or
// "node web › Mesh address".
func where(site *steps.Site, path string) string {
	if m := itemPath.FindStringSubmatch(path); m != nil && m[0] == path || m != nil && strings.HasPrefix(path, m[0]) {
		return itemWhere(site, m)
	}
	for _, p := range labels.paths {
		if under(path, p) {
			return labels.top[p]
		}
	}
	return path
}

func itemWhere(site *steps.Site, m []string) string {
	il, ok := labels.items[m[1]]
	if !ok {
		return m[0]
	}
	i, _ := strconv.Atoi(m[2])
	name, ok := il.name(site, i)
	switch {
	case !ok:
		name = il.noun + " " + strconv.Itoa(i+1)
	case name == "":
		name = il.noun + " " + strconv.Itoa(i+1) + " (unnamed)"
	default:
		name = il.noun + " " + name
	}
	if m[3] != "" {
		if l, ok := il.fields[m[3]]; ok {
			return name + " › " + l
		}
	}
	return name
}

// plainPaths writes the site paths in a message as the wizard's labels.
func plainPaths(site *steps.Site, msg string) string {
	msg = itemPath.ReplaceAllStringFunc(msg, func(s string) string {
		return itemWhere(site, itemPath.FindStringSubmatch(s))
	})
	for _, p := range labels.paths {
		if strings.Contains(p, ".") {
			msg = strings.ReplaceAll(msg, p, labels.top[p])
		}
	}
	return msg
}

// problemText is a problem as the wizard shows it: where, then what.
func problemText(site *steps.Site, e steps.FieldError) string {
	msg := plainPaths(site, e.Msg)
	if e.Path == "" {
		return msg
	}
	return where(site, e.Path) + ": " + msg
}

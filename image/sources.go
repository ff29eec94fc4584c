package image

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// source is one apt source: a "deb" line or one URI of a deb822 stanza.
type source struct {
	uri        string
	suites     []string
	components []string
}

// AptSources returns the apt lines a rootfs of suite is built from: the
// build host's Debian archive (the source that lists the host's own
// codename), with its -updates and -security companions when the host has
// them, each moved to suite and limited to main. A non-empty mirror
// replaces all of them with "deb MIRROR SUITE main". root is the host's
// root folder ("/"), a test's folder otherwise.
func AptSources(root, suite, mirror string) ([]string, error) {
	if mirror != "" {
		if !strings.Contains(mirror, "://") {
			return nil, fmt.Errorf("image: --mirror %q: want a URL (http://HOST/debian, file:///srv/debian)", mirror)
		}
		return []string{fmt.Sprintf("deb %s %s main", mirror, suite)}, nil
	}
	codename, err := hostCodename(root)
	if err != nil {
		return nil, err
	}
	srcs, err := readSources(root)
	if err != nil {
		return nil, err
	}
	var out []string
	add := func(line string) {
		if !slices.Contains(out, line) {
			out = append(out, line)
		}
	}
	for _, suffix := range []string{"", "-updates", "-security"} {
		for _, s := range srcs {
			if slices.Contains(s.suites, codename+suffix) && slices.Contains(s.components, "main") {
				add(fmt.Sprintf("deb %s %s%s main", s.uri, suite, suffix))
			}
		}
		if suffix == "" && len(out) == 0 {
			return nil, fmt.Errorf("image: no Debian archive for %q in %s's apt sources (/etc/apt/sources.list, sources.list.d): pass --mirror", codename, root)
		}
	}
	return out, nil
}

// hostCodename is VERSION_CODENAME from os-release.
func hostCodename(root string) (string, error) {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
				if v = strings.Trim(v, `"'`); v != "" {
					return v, nil
				}
			}
		}
	}
	return "", fmt.Errorf("image: no VERSION_CODENAME in %s's os-release: pass --mirror", root)
}

// readSources reads sources.list and sources.list.d (*.list, *.sources).
func readSources(root string) ([]source, error) {
	var out []source
	dir := filepath.Join(root, "etc/apt")
	if data, err := os.ReadFile(filepath.Join(dir, "sources.list")); err == nil {
		out = append(out, parseOneLine(data)...)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "sources.list.d"))
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("image: apt sources: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		data, err := os.ReadFile(filepath.Join(dir, "sources.list.d", name))
		if err != nil {
			continue
		}
		switch filepath.Ext(name) {
		case ".list":
			out = append(out, parseOneLine(data)...)
		case ".sources":
			out = append(out, parseDeb822(data)...)
		}
	}
	return out, nil
}

// parseOneLine reads "deb [options] URI SUITE COMPONENT..." lines.
func parseOneLine(data []byte) []source {
	var out []source
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 3 {
			continue
		}
		out = append(out, source{uri: f[0], suites: []string{f[1]}, components: f[2:]})
	}
	return out
}

// parseDeb822 reads deb822 stanzas (Types, URIs, Suites, Components,
// Enabled), with continuation lines.
func parseDeb822(data []byte) []source {
	var out []source
	fields := map[string]string{}
	var last string
	flush := func() {
		if len(fields) > 0 && slices.Contains(strings.Fields(fields["types"]), "deb") &&
			!strings.EqualFold(strings.TrimSpace(fields["enabled"]), "no") {
			for _, uri := range strings.Fields(fields["uris"]) {
				out = append(out, source{uri: uri, suites: strings.Fields(fields["suites"]), components: strings.Fields(fields["components"])})
			}
		}
		fields, last = map[string]string{}, ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}

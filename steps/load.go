package steps

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxSiteSize bounds a site file, so a stray argument cannot make ztwizard
// read a disk image.
const MaxSiteSize = 4 << 20

// Load reads, checks and validates a site file. Every problem is reported at
// once as Errors, each with the file, line, field path and value; the
// returned site has its defaults filled in.
func Load(path string) (*Site, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	return Parse(data, path)
}

// Parse is Load for a site already in memory; name is used in messages.
func Parse(data []byte, name string) (*Site, error) {
	if len(data) > MaxSiteSize {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("%d bytes is too large for a site file (at most %d)", len(data), MaxSiteSize)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{{File: name, Line: yamlErrLine(err), Msg: yamlErrMsg(err)}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, Errors{{File: name, Msg: "empty site file"}}
	}
	w := &walker{lines: map[string]int{}}
	w.walk(doc.Content[0], reflect.TypeFor[Site](), "")
	if len(w.errs) > 0 {
		return nil, w.located(w.errs, name)
	}
	var site Site
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&site); err != nil {
		return nil, Errors{{File: name, Line: yamlErrLine(err), Msg: yamlErrMsg(err)}}
	}
	site.SetDefaults()
	if err := site.Validate(); err != nil {
		var list Errors
		if errors.As(err, &list) {
			return nil, w.located(list, name)
		}
		return nil, err
	}
	return &site, nil
}

// Marshal writes the site as YAML that Parse reads back to the same site.
func (s *Site) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("site: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("site: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// walker checks a YAML tree against the Site type before decoding, so an
// unknown field or a wrong kind of value is reported with its field path,
// and it records the line of every path for later semantic errors.
type walker struct {
	lines map[string]int
	errs  Errors
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, FieldError{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		w.fail(n, path, "YAML aliases are not allowed in a site file")
		return
	}
	w.lines[path] = n.Line
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "want a mapping of fields, not %s", describe(n))
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fields[name] = f
			names = append(names, name)
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			sub := join(path, k.Value)
			f, ok := fields[k.Value]
			switch {
			case !ok:
				w.fail(k, sub, "unknown field%s", Suggest(k.Value, names))
			case seen[k.Value]:
				w.fail(k, sub, "field given twice")
			default:
				w.walk(v, f.Type, sub)
			}
			seen[k.Value] = true
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "want a list, not %s", describe(n))
			return
		}
		for i, item := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			if item.Kind == yaml.ScalarNode && item.Tag == "!!null" {
				w.fail(item, sub, "empty list item")
				continue
			}
			w.walk(item, t.Elem(), sub)
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "want a whole number, not %s", describe(n))
			return
		}
		if _, err := strconv.ParseInt(n.Value, 0, 64); err != nil || n.Tag != "!!int" {
			w.fail(n, path, "%q is not a whole number", n.Value)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "want text, not %s", describe(n))
		}
	}
}

// located attaches the file name and the line of each path.
func (w *walker) located(list Errors, name string) Errors {
	out := make(Errors, len(list))
	for i, e := range list {
		e.File = name
		if e.Line == 0 {
			e.Line = w.lineOf(e.Path)
		}
		out[i] = e
	}
	return out.sorted()
}

// lineOf finds the line of path, or of its nearest recorded parent.
func (w *walker) lineOf(path string) int {
	for path != "" {
		if l, ok := w.lines[path]; ok {
			return l
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut <= 0 {
			break
		}
		path = path[:cut]
	}
	return 0
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// yamlErrLine digs the line out of a yaml error ("yaml: line 3: ...").
func yamlErrLine(err error) int {
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end > 0 {
			n, _ := strconv.Atoi(rest[:end])
			return n
		}
	}
	return 0
}

// yamlErrMsg strips the "yaml: line N:" prefix, since the line is shown anyway.
func yamlErrMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "unmarshal errors:") {
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "unmarshal errors:"))
	}
	if strings.HasPrefix(msg, "line ") {
		if _, after, ok := strings.Cut(msg, ": "); ok {
			msg = after
		}
	}
	return "bad YAML: " + msg
}

package steps

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxSiteSize bounds a site file, so a stray argument cannot make ztwizard
// read a disk image.
const MaxSiteSize = 4 << 20

// Load reads, checks and validates a site file. Every problem is reported at
// once as Errors, each with the file, line, field path and value; the
// returned site has its defaults filled in. Only a regular file or a pipe
// is read, and never more than MaxSiteSize bytes of it.
func Load(path string) (*Site, error) {
	site, _, err := LoadSource(path)
	return site, err
}

// LoadSource is Load that also returns the bytes it read: what the site
// was parsed from.
func LoadSource(path string) (*Site, []byte, error) {
	data, err := ReadSource(path)
	if err != nil {
		return nil, nil, err
	}
	site, err := Parse(data, path)
	if err != nil {
		return nil, nil, err
	}
	return site, data, nil
}

// ReadSource reads a site file as Load does, without parsing it: at most
// MaxSiteSize bytes of a regular file or a pipe. Anything else (a device, a
// folder, a socket) is refused before it is read.
func ReadSource(path string) ([]byte, error) {
	// Stat first: opening a device can have effects of its own.
	fi, err := os.Stat(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = &os.PathError{Op: "open", Path: pe.Path, Err: pe.Err}
		}
		return nil, fmt.Errorf("site: %w", err)
	}
	if err := siteFileType(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	if err := siteFileType(path, fi); err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() && fi.Size() > MaxSiteSize {
		return nil, tooLarge(path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSiteSize+1))
	if err != nil {
		return nil, fmt.Errorf("site: %w", err)
	}
	if len(data) > MaxSiteSize {
		return nil, tooLarge(path)
	}
	return data, nil
}

// siteFileType refuses what is neither a regular file nor a pipe.
func siteFileType(path string, fi os.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() || m&os.ModeNamedPipe != 0 {
		return nil
	}
	what := "not a regular file"
	switch {
	case m.IsDir():
		what = "a folder"
	case m&os.ModeCharDevice != 0:
		what = "a character device"
	case m&os.ModeDevice != 0:
		what = "a block device"
	case m&os.ModeSocket != 0:
		what = "a socket"
	}
	return Errors{{File: path, Msg: "is " + what + ", not a site file"}}
}

func tooLarge(name string) error {
	return Errors{{File: name, Msg: fmt.Sprintf("larger than %d bytes (%d MiB), the limit for a site file", MaxSiteSize, MaxSiteSize>>20)}}
}

// Parse is Load for a site already in memory; name is used in messages.
// No message quotes the file unless it is a site mapping, and then only
// the short value of one of its fields.
func Parse(data []byte, name string) (*Site, error) {
	site, w, err := decode(data, name)
	if err != nil {
		return nil, err
	}
	list := w.later
	if err := site.Validate(); err != nil {
		var vl Errors
		if !errors.As(err, &vl) {
			return nil, err
		}
		list = append(list, vl...)
	}
	if len(list) > 0 {
		return nil, w.located(list, name)
	}
	return site, nil
}

// LoadDraft reads a site file that is well-formed but may not validate,
// with its defaults filled in, so the wizard can show its problems where
// they are fixed. It reads like Load (the same limits, no message quoting a
// file that is not a site); bad YAML, unknown fields and wrong kinds of
// value are still errors.
func LoadDraft(path string) (*Site, error) {
	data, err := ReadSource(path)
	if err != nil {
		return nil, err
	}
	site, _, err := decode(data, path)
	return site, err
}

// decode checks a site file's shape and decodes it, with defaults; the
// walker keeps the line of every field path for later messages.
func decode(data []byte, name string) (*Site, *walker, error) {
	if len(data) > MaxSiteSize {
		return nil, nil, tooLarge(name)
	}
	if line, ok := binaryAt(data); ok {
		return nil, nil, Errors{{File: name, Line: line, Msg: "not a site file: it holds binary data"}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, Errors{{File: name, Msg: "empty site file"}}
		}
		if line, kind := sniff(data); kind != "" {
			return nil, nil, notASite(name, line, kind)
		}
		return nil, nil, Errors{{File: name, Line: yamlErrLineIn(err, data), Msg: yamlErrMsg(err)}}
	}
	if len(doc.Content) == 0 {
		return nil, nil, Errors{{File: name, Msg: "empty site file"}}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil, Errors{{File: name, Line: root.Line, Msg: "empty site file"}}
	}
	if !isSiteMapping(root) {
		if line, kind := sniff(data); kind != "" {
			return nil, nil, notASite(name, line, kind)
		}
		return nil, nil, Errors{{File: name, Line: root.Line, Msg: "not a site file: " + holds(root)}}
	}
	if err := onlyDocument(dec, name); err != nil {
		return nil, nil, err
	}
	w := &walker{lines: map[string]int{}}
	w.walk(root, reflect.TypeFor[Site](), "")
	if len(w.errs) > 0 {
		return nil, nil, w.located(w.errs, name)
	}
	var site Site
	if err := root.Decode(&site); err != nil {
		return nil, nil, Errors{{File: name, Line: yamlErrLine(err), Msg: yamlErrMsg(err)}}
	}
	site.SetDefaults()
	return &site, w, nil
}

// onlyDocument refuses a second YAML document with content: it would be
// silently ignored.
func onlyDocument(dec *yaml.Decoder, name string) error {
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return Errors{{File: name, Line: yamlErrLine(err), Msg: yamlErrMsg(err)}}
		}
		if len(next.Content) == 0 || (next.Content[0].Kind == yaml.ScalarNode && next.Content[0].Tag == "!!null" && next.Content[0].Value == "") {
			continue
		}
		return Errors{{File: name, Line: next.Line, Msg: "a second YAML document (after \"---\"); a site file holds exactly one"}}
	}
}

// isSiteMapping tells whether the top of a YAML document is a mapping that
// a site file could be: empty, or with at least one site field (or a near
// miss of one, to be reported as a typo).
func isSiteMapping(n *yaml.Node) bool {
	if n.Kind != yaml.MappingNode {
		return false
	}
	if len(n.Content) == 0 {
		return true
	}
	names := fieldNames(reflect.TypeFor[Site]())
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.ScalarNode && len(k.Value) <= 64 && (slices.Contains(names, k.Value) || Suggest(k.Value, names) != "") {
			return true
		}
	}
	return false
}

// holds names what a YAML node is, without its content.
func holds(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "it holds a mapping without any site field (version, site, ca, ssh, wireguard, nodes, ...)"
	case yaml.SequenceNode:
		return "it holds a list, not a mapping of site fields"
	default:
		return "it holds text, not a mapping of site fields"
	}
}

func notASite(name string, line int, kind string) error {
	return Errors{{File: name, Line: line, Msg: "not a site file: it looks like " + kind}}
}

// fieldSets holds typeFields' answer for each struct type met (a site of
// 1,000 nodes walks the same few types thousands of times).
var fieldSets sync.Map

type fieldSet struct {
	names  []string
	fields map[string]reflect.StructField
}

// typeFields returns the YAML field names of the struct type t in order
// and its fields by name. Neither may be changed.
func typeFields(t reflect.Type) ([]string, map[string]reflect.StructField) {
	if fs, ok := fieldSets.Load(t); ok {
		return fs.(*fieldSet).names, fs.(*fieldSet).fields
	}
	fs := &fieldSet{names: fieldNames(t), fields: map[string]reflect.StructField{}}
	for i := range t.NumField() {
		fs.fields[fs.names[i]] = t.Field(i)
	}
	fieldSets.Store(t, fs)
	return fs.names, fs.fields
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		names = append(names, name)
	}
	return names
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
	// later are problems that do not stop decoding (a 0 where leaving the
	// field out means the default); they are reported with Validate's.
	later Errors
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
		names, fields := typeFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.fail(k, path, "a field name must be text, not %s", describe(k))
				continue
			}
			if len(k.Value) > 64 {
				w.fail(k, path, "a field name of %d bytes is too long (at most 64)", len(k.Value))
				continue
			}
			sub := join(path, k.Value)
			f, ok := fields[k.Value]
			switch {
			case !ok:
				w.fail(k, sub, "unknown field%s", Suggest(k.Value, names))
			case seen[k.Value]:
				w.fail(k, sub, "field given twice")
			default:
				w.walk(v, f.Type, sub)
				if f.Tag.Get("site") == "nonzero" && v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
					if z, err := strconv.ParseInt(v.Value, 0, 64); err == nil && z == 0 {
						w.later = append(w.later, FieldError{Line: v.Line, Path: sub, Msg: "0 is not a port; leave the field out for the default"})
					}
				}
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
			w.fail(n, path, "%s is not a whole number", describe(n))
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

// describe names a node for a message: its kind, or a scalar's value,
// quoted and cut short.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return quoteShort(n.Value)
	}
}

// quoteShort quotes a value for a message, cut to at most 40 characters.
func quoteShort(s string) string {
	const limit = 40
	if utf8.RuneCountInString(s) <= limit {
		return strconv.Quote(s)
	}
	return strconv.Quote(string([]rune(s)[:limit])) + "…"
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

// yamlAnchorRE finds the anchor a yaml error names ("unknown anchor 'x'
// referenced"): such errors come without a line.
var yamlAnchorRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`anchor '([^']*)'`) })

// yamlErrLineIn is yamlErrLine, or for an error about an anchor the line
// where that anchor is first used.
func yamlErrLineIn(err error, data []byte) int {
	if l := yamlErrLine(err); l > 0 {
		return l
	}
	m := yamlAnchorRE().FindStringSubmatch(err.Error())
	if m == nil || m[1] == "" {
		return 0
	}
	for _, mark := range []string{"*", "&"} {
		if i := bytes.Index(data, []byte(mark+m[1])); i >= 0 {
			return 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	return 0
}

// yamlQuoted is a quoted fragment of a yaml error: an anchor name, a key or
// a value from the file.
var yamlQuoted = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile("(^|\\s)('[^']*'|`[^`]*`|\"(?:[^\"\\\\]|\\\\.)*\")")
})

// yamlErrMsg keeps the first problem of a yaml error, without its "yaml:
// line N:" prefix (the line is shown anyway) and without any fragment of
// the file it quotes. Quoted single characters (an expected ',' or ']')
// are the grammar, not the file, and stay.
func yamlErrMsg(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "unmarshal errors:") {
		msg = strings.TrimSpace(strings.TrimPrefix(msg, "unmarshal errors:"))
	}
	msg, _, _ = strings.Cut(msg, "\n")
	if strings.HasPrefix(msg, "line ") {
		if _, after, ok := strings.Cut(msg, ": "); ok {
			msg = after
		}
	}
	var kept []string
	msg = yamlQuoted().ReplaceAllStringFunc(msg, func(m string) string {
		frag := strings.TrimLeftFunc(m, unicode.IsSpace)
		if len(frag) == 3 && frag[1] < utf8.RuneSelf {
			kept = append(kept, frag)
			return m
		}
		return ""
	})
	rest := msg
	for _, k := range kept {
		rest = strings.Replace(rest, k, "", 1)
	}
	if strings.ContainsAny(rest, "'`\"") || len(msg) > 120 {
		msg = "the file is not well-formed YAML"
	}
	return "bad YAML: " + strings.Join(strings.Fields(msg), " ")
}

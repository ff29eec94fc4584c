// Package templates holds the text templates of every configuration file
// ztwizard renders (nginx, sshd, wg-quick, systemd units, database snippets)
// and renders them strictly: a missing key is an error.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"sync"
	"text/template"
)

//go:embed *.tmpl
var files embed.FS

// all parses the templates on first use, not at every process start.
var all = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Option("missingkey=error").ParseFS(files, "*.tmpl"))
})

// Render executes the template called name (its file name, "nginx.tmpl")
// with data.
func Render(name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := all().ExecuteTemplate(&buf, name, data); err != nil {
		return nil, fmt.Errorf("templates: %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

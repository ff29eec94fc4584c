package tui

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"ztwizard/steps"
	"ztwizard/steps/state"
)

// DraftFile is the file, in the state folder, that keeps the wizard's
// answers for the site file sitePath while it runs, so an interrupted
// wizard can resume. Each site file has its own draft: a draft is offered
// only to the wizard on the file it was made for.
func DraftFile(sitePath string) string {
	abs, err := filepath.Abs(sitePath)
	if err != nil {
		abs = sitePath
	}
	sum := sha256.Sum256([]byte(abs))
	base := []rune(strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs)))
	for i, r := range base {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			base[i] = '_'
		}
	}
	if len(base) > 40 {
		base = base[:40]
	}
	return fmt.Sprintf("wizard-draft-%s-%x.yaml", string(base), sum[:4])
}

// draftFile is where a wizard's draft lives: the state folder dir and the
// file's name there; site is the site file it is the draft of.
type draftFile struct{ dir, name, site string }

// draftFor is the draft of the site file sitePath in the state folder dir.
func draftFor(dir, sitePath string) draftFile {
	return draftFile{dir: dir, name: DraftFile(sitePath), site: sitePath}
}

// draft is the wizard's state on disk: the site as far as it was filled,
// where the admin was, and the session's settings. The passphrase is
// never written.
type draft struct {
	Saved    time.Time   `yaml:"saved"`
	Step     int         `yaml:"step"`
	Reached  int         `yaml:"reached"`
	SitePath string      `yaml:"site_file,omitempty"`
	StateDir string      `yaml:"state,omitempty"`
	Site     *steps.Site `yaml:"site"`
}

const draftHeader = "# ztwizard: the wizard's answers so far; `ztwizard wizard` offers to resume them.\n"

// path is the draft file's path.
func (f draftFile) path() string { return filepath.Join(f.dir, f.name) }

// loadDraft reads the draft f; nil when there is none.
func loadDraft(f draftFile) (*draft, error) {
	dir := f.dir
	if dir == "" {
		return nil, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	store, err := state.OpenDryRun(dir) // reading changes nothing
	if err != nil {
		return nil, fmt.Errorf("draft: %w", err)
	}
	data, err := store.ReadFile(f.name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("draft: %w", err)
	}
	var d draft
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("draft: %s: %w", f.path(), err)
	}
	if d.Site == nil {
		return nil, fmt.Errorf("draft: %s holds no site", f.path())
	}
	d.Step = min(max(d.Step, 0), int(stepCount)-1)
	d.Reached = min(max(d.Reached, d.Step), int(stepCount)-1)
	return &d, nil
}

// save writes the draft into f, atomically, mode 0600.
func (d *draft) save(f draftFile) error {
	var buf bytes.Buffer
	buf.WriteString(draftHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("draft: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("draft: encode: %w", err)
	}
	store, err := state.Open(f.dir)
	if err != nil {
		return fmt.Errorf("draft: %w", err)
	}
	if err := store.WriteFile(f.name, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("draft: %w", err)
	}
	return nil
}

// removeDraft deletes the draft f, if any.
func removeDraft(f draftFile) error {
	if _, err := os.Stat(f.path()); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	store, err := state.Open(f.dir)
	if err != nil {
		return fmt.Errorf("draft: %w", err)
	}
	if err := store.Remove(f.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("draft: %w", err)
	}
	return nil
}

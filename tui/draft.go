package tui

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"ztwizard/steps"
	"ztwizard/steps/state"
)

// DraftFile is the file in the state folder that keeps the wizard's
// answers while it runs, so an interrupted wizard can resume.
const DraftFile = "wizard-draft.yaml"

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

// draftPath is where the draft of the state folder dir lives.
func draftPath(dir string) string { return filepath.Join(dir, DraftFile) }

// loadDraft reads the draft in the state folder dir; nil when there is none.
func loadDraft(dir string) (*draft, error) {
	if dir == "" {
		return nil, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	store, err := state.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("draft: %w", err)
	}
	data, err := store.ReadFile(DraftFile)
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
		return nil, fmt.Errorf("draft: %s: %w", draftPath(dir), err)
	}
	if d.Site == nil {
		return nil, fmt.Errorf("draft: %s holds no site", draftPath(dir))
	}
	d.Step = min(max(d.Step, 0), int(stepCount)-1)
	d.Reached = min(max(d.Reached, d.Step), int(stepCount)-1)
	return &d, nil
}

// save writes the draft into the state folder dir, atomically, mode 0600.
func (d *draft) save(dir string) error {
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
	store, err := state.Open(dir)
	if err != nil {
		return fmt.Errorf("draft: %w", err)
	}
	if err := store.WriteFile(DraftFile, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("draft: %w", err)
	}
	return nil
}

// removeDraft deletes the draft of the state folder dir, if any.
func removeDraft(dir string) error {
	if _, err := os.Stat(draftPath(dir)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	store, err := state.Open(dir)
	if err != nil {
		return fmt.Errorf("draft: %w", err)
	}
	if err := store.Remove(DraftFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("draft: %w", err)
	}
	return nil
}

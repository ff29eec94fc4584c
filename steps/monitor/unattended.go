package monitor

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/state"
)

// Unattended checks that the CA in store, if its key is encrypted, can
// re-sign its CRL with no one there: `ztwizard ca schedule` installed and
// enabled the CA host's CRL timer under root, its service loads the
// encrypted passphrase credential, and the credential is there. It returns
// nil when it can (or when there is no CA, or its key is plain: then
// nothing needs a passphrase), else the problem and its deadline, the
// CRL's nextUpdate.
func Unattended(store *state.Store, root string, nextUpdate time.Time) (*Problem, error) {
	for _, f := range []string{authority.CACertFile, authority.CAKeyFile} {
		if ok, err := store.Exists(f); err != nil || !ok {
			return nil, err
		}
	}
	key, err := store.ReadFile(authority.CAKeyFile)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(key); b == nil || b.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, nil
	}
	var missing []string
	unit := filepath.Join(root, steps.SystemdDir, steps.CACRLUnit)
	svc, err := os.ReadFile(unit)
	switch {
	case errors.Is(err, os.ErrNotExist):
		missing = append(missing, "no "+steps.CACRLUnit)
	case err != nil:
		return nil, fmt.Errorf("monitor: %w", err)
	case !bytes.Contains(svc, []byte("LoadCredentialEncrypted="+steps.PassphraseCredential+":")):
		missing = append(missing, steps.CACRLUnit+" does not load the passphrase credential")
	}
	// The link points to /etc/...: under another root it dangles here.
	if _, err := os.Lstat(filepath.Join(root, steps.SystemdDir, "timers.target.wants", steps.CACRLTimer)); err != nil {
		missing = append(missing, steps.CACRLTimer+" not enabled")
	}
	if _, err := os.Stat(filepath.Join(root, steps.PassphraseCredentialPath)); err != nil {
		missing = append(missing, "no encrypted passphrase "+steps.PassphraseCredentialPath)
	}
	if len(missing) == 0 {
		return nil, nil
	}
	return &Problem{
		What: "the CA key is encrypted and the CRL cannot be re-signed unattended (" + strings.Join(missing, ", ") +
			"): run `ztwizard ca schedule --passphrase-file F` before the CRL's nextUpdate",
		Deadline: nextUpdate.UTC(),
	}, nil
}

package authority

import (
	"bytes"
	"crypto"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// noTraces is checked before a CA is made: missing names the file that is
// not there (the CA's certificate or key). If any of the files is there,
// or the index or the audit log holds a record of one of the kinds (or an
// encryption of keyFile), the CA existed here before, and making a new one
// would orphan all it signed: an error naming what is there.
func (a *Authority) noTraces(missing string, files, kinds []string, keyFile string) error {
	var found []string
	for _, f := range files {
		ok, err := a.exists(f)
		if err != nil {
			return err
		}
		if ok {
			found = append(found, f)
		}
	}
	ix, err := a.Store.Index()
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	n := 0
	for _, r := range ix.Records {
		if slices.Contains(kinds, r.Kind) {
			n++
		}
	}
	if n > 0 {
		found = append(found, fmt.Sprintf("%d record(s) in index.json", n))
	}
	events, err := a.Store.AuditLog()
	if err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	n = 0
	for _, ev := range events {
		if slices.Contains(kinds, ev.Kind) || (ev.Kind == KindPassphrase && ev.Name == keyFile) {
			n++
		}
	}
	if n > 0 {
		found = append(found, fmt.Sprintf("%d record(s) in audit.log", n))
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("authority: %s is missing from the state store %s, which still holds %s: refusing to make a new CA over them "+
		"(what the old one signed would no longer verify); put the file back from a backup, or use another state folder",
		missing, a.Store.Dir(), strings.Join(found, ", "))
}

// matchSSHPub checks that an SSH CA's key matches its .pub file, which
// nodes trust.
func (a *Authority) matchSSHPub(rel string, key crypto.Signer) error {
	data, err := a.readFile(rel + ".pub")
	if err != nil {
		return err
	}
	stored, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return fmt.Errorf("authority: %s.pub: not an SSH public key", rel)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("authority: %s: %w", rel, err)
	}
	if !bytes.Equal(pub.Marshal(), stored.Marshal()) {
		return fmt.Errorf("authority: the SSH CA key %s does not match %s.pub: refusing to sign with it (restore the pair from a backup)",
			a.Store.Path(rel), a.Store.Path(rel))
	}
	return nil
}

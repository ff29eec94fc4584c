// Package authority is the site's certificate authorities at work: the X.509
// CA for mutual TLS and the SSH user and host CAs, kept in the state store.
// It creates them on first use, issues, signs and revokes, publishes the CRL
// and the KRL, and records every act in the store's index and audit log.
//
// Callers hold the store's lock around every method that writes
// (state.Store.Lock); reading methods need no lock.
package authority

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"ztwizard/steps"
	"ztwizard/steps/pki"
	"ztwizard/steps/sshca"
	"ztwizard/steps/state"
)

// Files in the state store.
const (
	CACertFile    = "ca/ca.pem"
	CAKeyFile     = "ca/ca-key.pem"
	CRLFile       = "ca/crl.pem"
	SSHUserCAFile = "ssh/user_ca"
	SSHHostCAFile = "ssh/host_ca"
	KRLFile       = "ssh/revoked.krl"
	x509Dir       = "x509"
	sshCertDir    = "ssh/certs"
	privateMode   = 0o600
	publicMode    = 0o644
)

// Record kinds in the index and the audit log.
const (
	KindCA         = "x509-ca"
	KindServer     = "x509-server"
	KindClient     = "x509-client"
	KindCRL        = "crl"
	KindSSHUserCA  = "ssh-user-ca"
	KindSSHHostCA  = "ssh-host-ca"
	KindSSHUser    = "ssh-user"
	KindSSHHost    = "ssh-host"
	KindKRL        = "krl"
	KindPassphrase = "passphrase"
)

// ErrInput marks errors caused by what the caller asked for (an unknown
// name, a missing or wrong passphrase) rather than by the machine, so a
// command can answer them with exit code 2.
var ErrInput = errors.New("bad input")

// inputError wraps err so that errors.Is(err, ErrInput) holds.
type inputError struct{ err error }

func (e inputError) Error() string           { return e.err.Error() }
func (e inputError) Unwrap() []error         { return []error{e.err, ErrInput} }
func badInput(format string, a ...any) error { return inputError{fmt.Errorf(format, a...)} }

// Authority works on one site's state store.
type Authority struct {
	Store      *state.Store
	Site       *steps.Site
	Passphrase []byte           // encrypts the CA private keys at rest; empty: stored plain
	Now        func() time.Time // the clock; time.Now when nil

	// Worked out once for many bundles, while Site stays the same pointer:
	// a caller that changes *Site in place makes a new Authority.
	mesh   map[string]netip.Addr
	meshOf *steps.Site // the Site mesh is of
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// audit records one act; a failure to record is an error, since the audit
// log must be complete.
func (a *Authority) audit(action, kind, name, serial string, notAfter time.Time, detail string) error {
	ev := state.Event{Time: a.now(), Action: action, Kind: kind, Name: name, Serial: serial, NotAfter: notAfter, Detail: detail}
	if err := a.Store.Audit(ev); err != nil {
		return fmt.Errorf("authority: audit %s %s: %w", action, name, err)
	}
	return nil
}

// auditRevoked records the revocation of rs, with one sync for them all.
func (a *Authority) auditRevoked(rs []state.Record) error {
	evs := make([]state.Event, len(rs))
	now := a.now()
	for i, r := range rs {
		evs[i] = state.Event{Time: now, Action: "revoke", Kind: r.Kind, Name: r.Name, Serial: r.Serial, NotAfter: r.NotAfter}
	}
	if err := a.Store.Audit(evs...); err != nil {
		return fmt.Errorf("authority: audit revoke %d certificate(s): %w", len(rs), err)
	}
	return nil
}

// exists tells whether a store file is there.
func (a *Authority) exists(rel string) (bool, error) {
	ok, err := a.Store.Exists(rel)
	if err != nil {
		return false, fmt.Errorf("authority: %w", err)
	}
	return ok, nil
}

// keyError turns a passphrase problem into a clear input error.
func keyError(what string, err error) error {
	switch {
	case errors.Is(err, pki.ErrPassphraseRequired), errors.Is(err, sshca.ErrPassphraseRequired):
		return badInput("%s is encrypted: give its passphrase with --passphrase-file", what)
	case errors.Is(err, pki.ErrBadPassphrase), errors.Is(err, sshca.ErrBadPassphrase):
		return badInput("%s: wrong passphrase", what)
	}
	return fmt.Errorf("authority: read %s: %w", what, err)
}

// readFile reads a store file, saying which one is missing.
func (a *Authority) readFile(rel string) ([]byte, error) {
	data, err := a.Store.ReadFile(rel)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("authority: %s is missing from the state store %s: %w", rel, a.Store.Dir(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	return data, nil
}

func (a *Authority) write(rel string, data []byte, mode os.FileMode) error {
	if err := a.Store.WriteFile(rel, data, mode); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	return nil
}

package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"
)

// Record is one issued certificate, x509 or SSH.
type Record struct {
	Kind       string     `json:"kind"`   // as Event.Kind
	Name       string     `json:"name"`   // client/service/user/host name
	Serial     string     `json:"serial"` // x509: hex lowercase; ssh: decimal
	Subject    string     `json:"subject,omitempty"`
	Principals []string   `json:"principals,omitempty"`
	NotBefore  time.Time  `json:"not_before"`
	NotAfter   time.Time  `json:"not_after"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
	// SupersededAt is when a newer certificate replaced this one for the
	// same name (SupersededBy is its serial).
	SupersededAt *time.Time `json:"superseded_at,omitempty"`
	SupersededBy string     `json:"superseded_by,omitempty"`
	File         string     `json:"file,omitempty"` // where its certificate lives, relative to the store
}

// Index lists the issued certificates and the counters for the next SSH
// serial, CRL number and KRL version. It lives in index.json in the store.
type Index struct {
	Records       []Record `json:"records"`
	NextSSHSerial uint64   `json:"next_ssh_serial"`
	CRLNumber     uint64   `json:"crl_number"`
	KRLVersion    uint64   `json:"krl_version"`
}

// Index reads the index. A missing index is empty, with NextSSHSerial 1
// (SSH serial 0 means "no serial"). An index behind the store's high-water
// mark (counters.json, or the audit log where that is missing) is an error
// wrapping ErrIndexBehind. To change the index, hold Lock from
// Index until SaveIndex returns, or a concurrent writer's changes are lost.
func (s *Store) Index() (*Index, error) {
	// The mark before the index: SaveIndex writes them in the other
	// order, so a reader without the lock never sees an index older than
	// the mark it read.
	m, err := s.readMark()
	if err != nil {
		return nil, err
	}
	ix := &Index{}
	data, err := s.readFile(indexName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("state: read %s: %w", indexName, err)
	case len(bytes.TrimSpace(data)) == 0:
		// An emptied index is an empty one, which the mark then judges.
	default:
		if err := json.Unmarshal(data, ix); err != nil {
			return nil, fmt.Errorf("state: read %s: %w", indexName, err)
		}
	}
	if ix.NextSSHSerial == 0 {
		ix.NextSSHSerial = 1
	}
	if err := s.checkMark(ix, m); err != nil {
		return nil, err
	}
	return ix, nil
}

// SaveIndex atomically replaces index.json (mode 0600) with ix, then raises
// the high-water mark to it. An ix behind the mark is refused. Hold Lock
// around the Index call that produced ix and SaveIndex.
func (s *Store) SaveIndex(ix *Index) error {
	out := *ix
	if out.Records == nil {
		out.Records = []Record{}
	}
	m, err := s.readMark()
	if err != nil {
		return err
	}
	if err := s.checkMark(&out, m); err != nil {
		return err
	}
	data, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return fmt.Errorf("state: write %s: %w", indexName, err)
	}
	if err := s.writeFile(indexName, append(data, '\n'), 0o600); err != nil {
		return err
	}
	// The mark after the index: a crash between the two leaves the mark
	// behind the index, which is safe, never ahead of it.
	if data, err = json.MarshalIndent(m.raise(markOf(&out)), "", "  "); err != nil {
		return fmt.Errorf("state: write %s: %w", markName, err)
	}
	return s.writeFile(markName, append(data, '\n'), 0o600)
}

// Find returns copies of the records of that kind and name, newest (by
// NotBefore, then by order of addition) last.
func (ix *Index) Find(kind, name string) []Record {
	var found []Record
	for _, r := range ix.Records {
		if r.Kind == kind && r.Name == name {
			found = append(found, r)
		}
	}
	slices.SortStableFunc(found, func(a, b Record) int {
		return a.NotBefore.Compare(b.NotBefore)
	})
	return found
}

// BySerial returns the last added record with that serial, as a pointer into
// ix.Records so that a caller can mark it revoked and save the index. The
// pointer is valid until ix.Records is appended to. x509 serials (hex) and
// SSH serials (decimal) share this lookup; use Find or check Kind where both
// may collide.
func (ix *Index) BySerial(serial string) (*Record, bool) {
	for i := len(ix.Records) - 1; i >= 0; i-- {
		if ix.Records[i].Serial == serial {
			return &ix.Records[i], true
		}
	}
	return nil, false
}

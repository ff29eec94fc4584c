package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// markName is the store's high-water mark: what index.json has held at
// most. An index behind it (emptied, reset to {} or null, an older copy put
// back) is refused, so that no serial is used twice and no CRL or KRL lists
// fewer revocations or carries a lower number than one before it.
const markName = "counters.json"

// ErrIndexBehind is wrapped by the error Index and SaveIndex return for an
// index that is behind the store's high-water mark.
var ErrIndexBehind = errors.New("the index is behind what this store has issued")

// mark is the high-water mark. Every field only grows.
type mark struct {
	CRLNumber     uint64   `json:"crl_number"`
	KRLVersion    uint64   `json:"krl_version"`
	NextSSHSerial uint64   `json:"next_ssh_serial"`
	Records       int      `json:"records"`
	Revoked       []string `json:"revoked,omitempty"` // "kind serial", sorted
}

func revokedKey(kind, serial string) string { return kind + " " + serial }

// markOf is the mark an index sets.
func markOf(ix *Index) mark {
	m := mark{CRLNumber: ix.CRLNumber, KRLVersion: ix.KRLVersion, NextSSHSerial: ix.NextSSHSerial, Records: len(ix.Records)}
	for _, r := range ix.Records {
		if r.RevokedAt != nil {
			m.Revoked = append(m.Revoked, revokedKey(r.Kind, r.Serial))
		}
	}
	slices.Sort(m.Revoked)
	m.Revoked = slices.Compact(m.Revoked)
	return m
}

// raise returns the mark that covers both m and n.
func (m mark) raise(n mark) mark {
	out := mark{CRLNumber: max(m.CRLNumber, n.CRLNumber), KRLVersion: max(m.KRLVersion, n.KRLVersion),
		NextSSHSerial: max(m.NextSSHSerial, n.NextSSHSerial), Records: max(m.Records, n.Records)}
	out.Revoked = append(slices.Clone(m.Revoked), n.Revoked...)
	slices.Sort(out.Revoked)
	out.Revoked = slices.Compact(out.Revoked)
	return out
}

// behind lists how ix falls short of m; nothing when it does not.
func (m mark) behind(ix *Index) []string {
	out := m.behindCounts(ix, len(ix.Records))
	have := markOf(ix).Revoked
	var lost []string
	for _, k := range m.Revoked {
		if _, found := slices.BinarySearch(have, k); !found {
			lost = append(lost, k)
		}
	}
	if len(lost) > 0 {
		if len(lost) > 3 {
			lost = append(lost[:3], "...")
		}
		out = append(out, fmt.Sprintf("%d revocation(s) missing (%s)", len(lost), strings.Join(lost, ", ")))
	}
	return out
}

// behindCounts lists how the counters of ix and a count of records fall
// short of m's.
func (m mark) behindCounts(ix *Index, records int) []string {
	var out []string
	if ix.CRLNumber < m.CRLNumber {
		out = append(out, fmt.Sprintf("CRL number %d, but CRL %d was published", ix.CRLNumber, m.CRLNumber))
	}
	if ix.KRLVersion < m.KRLVersion {
		out = append(out, fmt.Sprintf("KRL version %d, but KRL %d was published", ix.KRLVersion, m.KRLVersion))
	}
	if ix.NextSSHSerial < m.NextSSHSerial {
		out = append(out, fmt.Sprintf("next SSH serial %d, but serial %d was used", ix.NextSSHSerial, m.NextSSHSerial-1))
	}
	if records < m.Records {
		out = append(out, fmt.Sprintf("%d certificate record(s), but %d were recorded", records, m.Records))
	}
	return out
}

// readMark reads the high-water mark. Without counters.json (a store made
// before it, or one whose counters.json was removed with its index) it is
// rebuilt from the audit log, which records every CRL and KRL published,
// every SSH serial signed and every revocation.
//
// counters.json is the mark SaveIndex wrote (one JSON object, indented in a
// store made before appends) followed by the lines AddRecord and
// ReserveSSHSerial appended, each the counters of the mark raised so far
// (revocations are only in the first). A last line cut short is ignored.
func (s *Store) readMark() (mark, error) {
	var m mark
	data, err := s.readFile(markName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s.markFromAudit()
	case err != nil:
		return m, fmt.Errorf("state: read %s: %w", markName, err)
	}
	if nl := bytes.LastIndexByte(data, '\n'); nl >= 0 && len(bytes.TrimSpace(data[:nl])) > 0 {
		data = data[:nl+1]
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for first := true; ; first = false {
		var n mark
		err := dec.Decode(&n)
		if err == io.EOF && !first {
			break
		}
		if err != nil {
			return m, fmt.Errorf("state: read %s: %w", markName, err)
		}
		m = m.raise(n)
	}
	slices.Sort(m.Revoked)
	return m, nil
}

// markTail opens counters.json for an append and reads its last line: the
// mark but for revocations. f is nil where that cannot be done (no file, a
// last line that is not a whole mark, as in a store made before appends).
func (s *Store) markTail() (m mark, f *os.File, end int64, err error) {
	f, last, end, err := s.openTail(markName)
	if err != nil || f == nil {
		return m, nil, 0, err
	}
	if !bytes.HasPrefix(last, []byte("{")) || json.Unmarshal(last, &m) != nil {
		f.Close()
		return m, nil, 0, nil
	}
	return m, f, end, nil
}

func (s *Store) markFromAudit() (mark, error) {
	var m mark
	events, err := s.AuditLog()
	if err != nil {
		return m, err
	}
	for _, ev := range events {
		n, err := strconv.ParseUint(ev.Serial, 10, 64)
		numeric := err == nil
		switch {
		case ev.Action == "publish" && ev.Kind == "crl" && numeric:
			m.CRLNumber = max(m.CRLNumber, n)
		case ev.Action == "publish" && ev.Kind == "krl" && numeric:
			m.KRLVersion = max(m.KRLVersion, n)
		case ev.Action == "sign" && strings.HasPrefix(ev.Kind, "ssh-") && numeric:
			m.NextSSHSerial = max(m.NextSSHSerial, n+1)
		case ev.Action == "revoke" && ev.Serial != "":
			m.Revoked = append(m.Revoked, revokedKey(ev.Kind, ev.Serial))
		}
	}
	slices.Sort(m.Revoked)
	m.Revoked = slices.Compact(m.Revoked)
	return m, nil
}

// checkMark refuses an index behind the store's high-water mark.
func (s *Store) checkMark(ix *Index, m mark) error {
	if short := m.behind(ix); len(short) > 0 {
		return s.behindError(short)
	}
	return nil
}

// behindError is the error for an index that falls short of the mark.
func (s *Store) behindError(short []string) error {
	return fmt.Errorf("state: %s: %w: it has %s; refusing, since a serial would be used twice or a revocation lost "+
		"(put back the latest index.json from a backup; %s and audit.log hold what was issued)",
		s.Path(indexName), ErrIndexBehind, strings.Join(short, "; "), markName)
}

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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// index.json is a log of JSON lines: first the whole index (as SaveIndex
// writes it), then one line for each change appended since (AddRecord,
// ReserveSSHSerial). Each appended line carries every counter and the number
// of records after it, so its last line alone tells the state of the
// counters: appending costs the same with 100,000 records as with none. A
// last line without its newline is an append cut short (its fdatasync never
// returned, so nothing it stood for was handed out): readers ignore it and
// the next append cuts it off. An index.json written before this format
// (one indented JSON object) reads the same way; its first write rewrites
// it.
//
// logLine is one appended line.
type logLine struct {
	Records       *int    `json:"records"` // how many after this line
	NextSSHSerial uint64  `json:"next_ssh_serial"`
	CRLNumber     uint64  `json:"crl_number"`
	KRLVersion    uint64  `json:"krl_version"`
	Add           *Record `json:"add,omitempty"`
}

// Index reads the index. A missing index is empty, with NextSSHSerial 1
// (SSH serial 0 means "no serial"). An index behind the store's high-water
// mark (counters.json, or the audit log where that is missing) is an error
// wrapping ErrIndexBehind. To change the index, hold Lock from
// Index until SaveIndex returns, or a concurrent writer's changes are lost.
func (s *Store) Index() (*Index, error) {
	// The mark before the index: writers write them in the other
	// order, so a reader without the lock never sees an index older than
	// the mark it read.
	m, err := s.readMark()
	if err != nil {
		return nil, err
	}
	data, err := s.readFile(indexName)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state: read %s: %w", indexName, err)
	}
	ix, err := parseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", indexName, err)
	}
	if err := s.checkMark(ix, m); err != nil {
		return nil, err
	}
	return ix, nil
}

// parseIndex reads index.json's content: the index, then the lines
// appended to it.
func parseIndex(data []byte) (*Index, error) {
	ix := &Index{}
	if nl := bytes.LastIndexByte(data, '\n'); nl >= 0 && len(bytes.TrimSpace(data[:nl])) > 0 {
		data = data[:nl+1] // a last line cut short is no line
	}
	if len(bytes.TrimSpace(data)) > 0 {
		// An emptied index is an empty one, which the mark then judges.
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(ix); err != nil {
			return nil, err
		}
		for line := 2; ; line++ {
			var l logLine
			err := dec.Decode(&l)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("appended line %d: %w", line, err)
			}
			if l.Add != nil {
				ix.Records = append(ix.Records, *l.Add)
			}
			if l.Records == nil || *l.Records != len(ix.Records) {
				return nil, fmt.Errorf("appended line %d: does not follow the lines before it", line)
			}
			ix.NextSSHSerial = max(ix.NextSSHSerial, l.NextSSHSerial)
			ix.CRLNumber = max(ix.CRLNumber, l.CRLNumber)
			ix.KRLVersion = max(ix.KRLVersion, l.KRLVersion)
		}
	}
	if ix.NextSSHSerial == 0 {
		ix.NextSSHSerial = 1
	}
	return ix, nil
}

// SaveIndex atomically replaces index.json (mode 0600) with ix, then the
// high-water mark with one raised to it. An ix behind the mark is refused.
// Hold Lock around the Index call that produced ix and SaveIndex.
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
	data, err := json.Marshal(&out)
	if err != nil {
		return fmt.Errorf("state: write %s: %w", indexName, err)
	}
	// A line with the counters after the index, so that the last line is
	// always a short one for appenders to read.
	n := len(out.Records)
	tail, err := json.Marshal(logLine{Records: &n, NextSSHSerial: out.NextSSHSerial, CRLNumber: out.CRLNumber, KRLVersion: out.KRLVersion})
	if err != nil {
		return fmt.Errorf("state: write %s: %w", indexName, err)
	}
	data = append(append(append(data, '\n'), tail...), '\n')
	if err := s.writeFile(indexName, data, 0o600); err != nil {
		return err
	}
	// The mark after the index: a crash between the two leaves the mark
	// behind the index, which is safe, never ahead of it.
	if data, err = json.Marshal(m.raise(markOf(&out))); err != nil {
		return fmt.Errorf("state: write %s: %w", markName, err)
	}
	return s.writeFile(markName, append(data, '\n'), 0o600)
}

// markCompactAt is the size past which an append rewrites counters.json as
// one line (about 900 appended lines; a rewrite costs one more fsync).
const markCompactAt = 64 << 10

// AddRecord adds r to the index, raising the high-water mark. It appends
// one line to index.json (one write and one fdatasync) and one to
// counters.json, reading only their last lines: its cost does not grow
// with the index. Hold Lock.
func (s *Store) AddRecord(r Record) error {
	return s.appendIndex(func(l *logLine) error {
		*l.Records++
		l.Add = &r
		return nil
	}, func(ix *Index) error {
		ix.Records = append(ix.Records, r)
		return nil
	})
}

// ReserveSSHSerial takes the next SSH serial: when it returns, the index
// and the high-water mark say it is used, so it is never given out again
// even if the certificate is never made. Like AddRecord it only appends.
// Hold Lock.
func (s *Store) ReserveSSHSerial() (uint64, error) {
	var serial uint64
	err := s.appendIndex(func(l *logLine) error {
		serial = max(l.NextSSHSerial, 1)
		l.NextSSHSerial = serial + 1
		return nil
	}, func(ix *Index) error {
		serial = max(ix.NextSSHSerial, 1)
		ix.NextSSHSerial = serial + 1
		return nil
	})
	return serial, err
}

// appendIndex appends the line change makes of the index's last line, and
// raises the mark with a line of its own. Where the index's last line is
// not such a line (no index yet, one written before this format, a dry
// run) it reads the whole index, applies whole to it and saves it.
func (s *Store) appendIndex(change func(*logLine) error, whole func(*Index) error) error {
	if s.dry == nil {
		done, err := s.tryAppend(change)
		if done || err != nil {
			return err
		}
	}
	ix, err := s.Index()
	if err != nil {
		return err
	}
	if err := whole(ix); err != nil {
		return err
	}
	return s.SaveIndex(ix)
}

// tryAppend is appendIndex's fast way; done is false where it does not
// apply.
func (s *Store) tryAppend(change func(*logLine) error) (done bool, err error) {
	m, mf, mend, err := s.markTail()
	if err != nil || mf == nil {
		return false, err
	}
	defer mf.Close()
	f, last, end, err := s.openTail(indexName)
	if err != nil || f == nil {
		return false, err
	}
	defer f.Close()
	var l logLine
	if json.Unmarshal(last, &l) != nil || l.Records == nil {
		return false, nil // not an appended line: the whole way
	}
	ix := Index{NextSSHSerial: max(l.NextSSHSerial, 1), CRLNumber: l.CRLNumber, KRLVersion: l.KRLVersion}
	if short := m.behindCounts(&ix, *l.Records); len(short) > 0 {
		return false, s.behindError(short)
	}
	l.Add = nil // that line's record is in the index already
	if err := change(&l); err != nil {
		return false, err
	}
	if err := appendAt(f, end, l, true); err != nil {
		return false, fmt.Errorf("state: write %s: %w", indexName, err)
	}
	// The mark after the index, as SaveIndex does. It needs no sync of
	// its own: the index's line is on disk before this one is written, so
	// a crash can lose this line (the mark then lags, which is safe) but
	// never keep it without the index's.
	raised := m.raise(mark{CRLNumber: l.CRLNumber, KRLVersion: l.KRLVersion, NextSSHSerial: l.NextSSHSerial, Records: *l.Records})
	if mend > markCompactAt {
		// Grown long: one line again, with the revocations of the first.
		all, err := s.readMark()
		if err != nil {
			return false, err
		}
		data, err := json.Marshal(all.raise(raised))
		if err != nil {
			return false, fmt.Errorf("state: write %s: %w", markName, err)
		}
		return true, s.writeFile(markName, append(data, '\n'), 0o600)
	}
	raised.Revoked = nil // the first line holds them; appended lines only counters
	if err := appendAt(mf, mend, raised, false); err != nil {
		return false, fmt.Errorf("state: write %s: %w", markName, err)
	}
	return true, nil
}

// openTail opens the store file rel for appending and returns its last
// complete line and where that line ends (a longer file holds a last line
// cut short). A missing file is f == nil.
func (s *Store) openTail(rel string) (f *os.File, last []byte, end int64, err error) {
	path, err := s.parents(rel, false)
	if err != nil {
		return nil, nil, 0, err
	}
	f, err = os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, 0, nil
	case errors.Is(err, syscall.ELOOP):
		return nil, nil, 0, fmt.Errorf("state: %s: %w", path, ErrSymlink)
	case err != nil:
		return nil, nil, 0, fmt.Errorf("state: %w", err)
	}
	fail := func(err error) (*os.File, []byte, int64, error) {
		f.Close()
		return nil, nil, 0, fmt.Errorf("state: read %s: %w", rel, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file", path))
	}
	if err := s.fixMode(rel, fi); err != nil {
		return fail(err)
	}
	size := fi.Size()
	// Read backwards until the chunk holds the newline before the last
	// line, or the start of the file.
	for chunk := int64(4096); ; chunk *= 4 {
		from := max(size-chunk, 0)
		buf := make([]byte, size-from)
		if _, err := f.ReadAt(buf, from); err != nil && err != io.EOF {
			return fail(err)
		}
		nl := bytes.LastIndexByte(buf, '\n')
		if nl < 0 && from > 0 {
			continue
		}
		if nl < 0 {
			// No complete line at all: nothing to append to.
			f.Close()
			return nil, nil, 0, nil
		}
		end = from + int64(nl) + 1
		start := bytes.LastIndexByte(buf[:nl], '\n') + 1
		if start == 0 && from > 0 {
			continue
		}
		return f, buf[start:nl], end, nil
	}
}

// appendAt writes v as a JSON line at end, cutting off what follows (a
// line cut short), with one write, and with sync waits until it is on disk.
func appendAt(f *os.File, end int64, v any, sync bool) error {
	line, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != end {
		if err := f.Truncate(end); err != nil {
			return err
		}
	}
	if _, err := f.WriteAt(append(line, '\n'), end); err != nil || !sync {
		return err
	}
	return unix.Fdatasync(int(f.Fd()))
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

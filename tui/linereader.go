package tui

import (
	"bufio"
	"context"
	"io"
)

// lineReader hands out its input one line per Read, so that each prompt
// (which reads with a fresh buffered scanner) takes exactly its own line.
// It reads only when a prompt asks for a line: nothing else waits on the
// terminal between prompts, so a passphrase read with the echo off goes to
// the passphrase. It notes when a prompt finds the input ended, and ends
// the input when ctx is done (ctrl+c), though a read is waiting.
type lineReader struct {
	ctx         context.Context
	want        chan struct{} // asks the reading goroutine for a line
	lines       chan []byte   // its answer; closed when the input ends
	asked       bool          // a line is asked for and not yet received
	pending     []byte
	eof         bool
	interrupted bool
}

func newLineReader(ctx context.Context, r io.Reader) *lineReader {
	l := &lineReader{ctx: ctx, want: make(chan struct{}), lines: make(chan []byte)}
	go func() {
		br := bufio.NewReader(r)
		defer close(l.lines)
		for {
			select {
			case <-l.want:
			case <-ctx.Done():
				return
			}
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				if line[len(line)-1] != '\n' {
					line = append(line, '\n')
				}
				select {
				case l.lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return l
}

// fill waits for the next line; false when the input is over.
func (l *lineReader) fill() bool {
	if len(l.pending) > 0 {
		return true
	}
	if l.eof {
		return false
	}
	if !l.asked {
		select {
		case l.want <- struct{}{}:
			l.asked = true
		case <-l.lines: // closed: the input ended
			l.eof = true
			return false
		case <-l.ctx.Done():
			l.interrupted, l.eof = true, true
			return false
		}
	}
	select {
	case line, ok := <-l.lines:
		l.asked = false
		if ok {
			l.pending = line
			return true
		}
	case <-l.ctx.Done():
		l.interrupted = true
	}
	l.eof = true
	return false
}

// empty tells whether the input holds nothing at all.
func (l *lineReader) empty() bool { return !l.fill() }

// line takes the next whole line, without its line break; false when the
// input is over.
func (l *lineReader) line() (string, bool) {
	if !l.fill() {
		return "", false
	}
	s := string(l.pending)
	l.pending = nil
	return trimEOL(s), true
}

func trimEOL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

func (l *lineReader) Read(p []byte) (int, error) {
	if !l.fill() {
		return 0, io.EOF
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

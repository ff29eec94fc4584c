package tui

import (
	"bufio"
	"context"
	"io"
)

// lineReader hands out its input one line per Read, so that each prompt
// (which reads with a fresh buffered scanner) takes exactly its own line.
// It notes when a prompt finds the input ended, and ends the input when
// ctx is done (ctrl+c), though a read is waiting.
type lineReader struct {
	ctx         context.Context
	lines       chan []byte
	pending     []byte
	eof         bool
	interrupted bool
}

func newLineReader(ctx context.Context, r io.Reader) *lineReader {
	l := &lineReader{ctx: ctx, lines: make(chan []byte)}
	go func() {
		br := bufio.NewReader(r)
		defer close(l.lines)
		for {
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
	select {
	case line, ok := <-l.lines:
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

func (l *lineReader) Read(p []byte) (int, error) {
	if !l.fill() {
		return 0, io.EOF
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

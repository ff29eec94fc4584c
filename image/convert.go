package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
)

// Output formats.
const (
	FormatQcow2 = "qcow2" // qemu's copy-on-write format, made by qemu-img convert
	FormatRaw   = "raw"   // a sparse raw disk, as written
)

// outputs write the finished raw disk at out in each output format; done
// is told their progress.
var outputs = map[string]func(ctx context.Context, raw, out string, compress bool, done func(n, total int64)) error{
	FormatQcow2: outputQcow2,
	FormatRaw:   outputRaw,
}

// outputRaw keeps the raw disk as it is: sparse, the GPT at both ends.
func outputRaw(_ context.Context, raw, out string, compress bool, _ func(n, total int64)) error {
	if compress {
		return fmt.Errorf("image: only qcow2 images can be compressed")
	}
	if err := os.Rename(raw, out); err != nil {
		return fmt.Errorf("image: output %s: %w", out, err)
	}
	return nil
}

var reQemuProgress = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`) })

// outputQcow2 turns the raw disk into a qcow2 with qemu-img convert,
// zlib-compressed when compress is set. qemu-img's own progress (-p) is
// passed to done in hundredths of a percent out of 10000.
func outputQcow2(ctx context.Context, raw, out string, compress bool, done func(n, total int64)) error {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("image: convert: qemu-img is not installed (apt-get install qemu-utils)")
	}
	args := []string{"convert", "-p", "-f", "raw", "-O", "qcow2"}
	if compress {
		args = append(args, "-c", "-o", "compression_type=zlib")
	}
	args = append(args, raw, out)
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("image: convert %s: %w", out, err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("image: convert %s: %w", out, err)
	}
	readProgress(stdout, done)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("image: convert %s: %w: %s", out, err, stderr.String())
	}
	return nil
}

// readProgress reads qemu-img's "(12.34/100%)" lines, separated by \r.
func readProgress(r io.Reader, done func(n, total int64)) {
	sc := bufio.NewScanner(r)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		m := reQemuProgress().FindSubmatch(sc.Bytes())
		if m == nil || done == nil {
			continue
		}
		pct, _ := strconv.ParseFloat(string(m[1]), 64)
		done(int64(pct*100), 10000)
	}
}

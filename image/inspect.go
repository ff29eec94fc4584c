package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// Partition is one partition of a baked disk.
type Partition struct {
	Index       int
	Name        string
	Type        string // the GPT type GUID
	GUID        string
	Start, Size int64 // bytes
}

// Partitions reads a raw disk's GPT.
func Partitions(raw string) ([]Partition, error) {
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("image: open %s: %w", raw, err)
	}
	defer d.Close()
	t, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("image: %s: partition table: %w", raw, err)
	}
	g, ok := t.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("image: %s: not a GPT disk", raw)
	}
	var out []Partition
	for _, p := range g.Partitions {
		if p == nil || p.Type == gpt.Unused {
			continue
		}
		out = append(out, Partition{Index: p.Index, Name: p.Name, Type: strings.ToUpper(string(p.Type)), GUID: p.GUID,
			Start: int64(p.Start) * sector, Size: int64(p.End-p.Start+1) * sector})
	}
	return out, nil
}

// ExtractPartition copies a partition of a raw disk to its own file,
// sparsely, for fsck.vfat, e2fsck or debugfs.
func ExtractPartition(raw string, p Partition, out string) error {
	in, err := os.Open(raw)
	if err != nil {
		return fmt.Errorf("image: extract: %w", err)
	}
	defer in.Close()
	f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("image: extract: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(p.Size); err != nil {
		return fmt.Errorf("image: extract: %w", err)
	}
	fd := int(in.Fd())
	buf := make([]byte, 4*mib)
	pos, end := p.Start, p.Start+p.Size
	for pos < end {
		start, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) || (err == nil && start >= end) {
			break
		}
		if err != nil {
			return fmt.Errorf("image: extract: %w", err)
		}
		stop, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("image: extract: %w", err)
		}
		stop = min(stop, end)
		for q := start; q < stop; {
			n := min(int64(len(buf)), stop-q)
			if _, err := in.ReadAt(buf[:n], q); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("image: extract: %w", err)
			}
			if _, err := f.WriteAt(buf[:n], q-p.Start); err != nil {
				return fmt.Errorf("image: extract: %w", err)
			}
			q += n
		}
		pos = stop
	}
	return nil
}

// ToRaw converts an image (qcow2 or raw) to a sparse raw file.
func ToRaw(ctx context.Context, img, raw string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput()
	if err != nil {
		return fmt.Errorf("image: convert %s to raw: %w: %s", img, err, out)
	}
	return nil
}

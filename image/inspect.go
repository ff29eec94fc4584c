package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
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

// InitrdFiles lists the paths in the initramfs of a UKI: its .initrd
// section, unpacked as its magic says (xz and zstd by their tools, gzip
// here), read as newc cpio archives one after another.
func InitrdFiles(ctx context.Context, uki string) ([]string, error) {
	f, err := pe.Open(uki)
	if err != nil {
		return nil, fmt.Errorf("image: %s: %w", uki, err)
	}
	defer f.Close()
	s := f.Section(".initrd")
	if s == nil {
		return nil, fmt.Errorf("image: %s: no .initrd section", uki)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("image: %s: .initrd: %w", uki, err)
	}
	// A PE section is padded to its file alignment: the archive's own end
	// marks where it stops.
	data = data[:min(len(data), int(s.VirtualSize))]
	return cpioFiles(ctx, data)
}

// cpioFiles lists the paths of newc cpio archives, each compressed or not.
func cpioFiles(ctx context.Context, data []byte) ([]string, error) {
	var names []string
	for len(data) > 0 {
		switch {
		case data[0] == 0:
			data = data[1:] // padding between archives
		case bytes.HasPrefix(data, []byte("070701")):
			n, rest, err := readCpio(data)
			if err != nil {
				return nil, err
			}
			names, data = append(names, n...), rest
		default:
			plain, err := decompress(ctx, data)
			if err != nil {
				return nil, err
			}
			more, err := cpioFiles(ctx, plain)
			return append(names, more...), err
		}
	}
	return names, nil
}

// decompress unpacks a whole xz, zstd or gzip stream.
func decompress(ctx context.Context, data []byte) ([]byte, error) {
	var tool string
	switch {
	case bytes.HasPrefix(data, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		tool = "xz"
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		tool = "zstd"
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("image: initramfs: %w", err)
		}
		out, err := io.ReadAll(z)
		if err != nil {
			return nil, fmt.Errorf("image: initramfs: %w", err)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("image: initramfs: unknown format % x", data[:min(len(data), 6)])
	}
	cmd := exec.CommandContext(ctx, tool, "-dc")
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("image: initramfs: %s -dc: %w: %s", tool, err, stderr.String())
	}
	return out, nil
}

// readCpio reads one newc archive up to its trailer: its paths and what
// follows it.
func readCpio(data []byte) (names []string, rest []byte, err error) {
	const header = 110
	for {
		if len(data) < header || string(data[:6]) != "070701" {
			return nil, nil, errors.New("image: initramfs: a broken cpio header")
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(data[6+8*i:14+8*i]), 16, 32)
			return int(v), err
		}
		size, err1 := field(6)
		nameSize, err2 := field(11)
		if err := errors.Join(err1, err2); err != nil || nameSize < 1 {
			return nil, nil, fmt.Errorf("image: initramfs: a broken cpio header: %v", err)
		}
		nameEnd := header + nameSize
		dataStart := (nameEnd + 3) &^ 3
		dataEnd := (dataStart + size + 3) &^ 3
		if dataStart > len(data) || dataStart+size > len(data) {
			return nil, nil, errors.New("image: initramfs: a truncated cpio archive")
		}
		name := string(data[header : nameEnd-1])
		data = data[min(dataEnd, len(data)):]
		if name == "TRAILER!!!" {
			return names, data, nil
		}
		names = append(names, name)
	}
}

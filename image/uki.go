package image

import (
	"context"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
)

// StubPath is systemd-boot's UEFI stub (Debian's systemd-boot-efi).
const StubPath = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// UKI is what a unified kernel image joins on the stub.
type UKI struct {
	Stub    string // the systemd-stub; StubPath when empty
	OSRel   string // os-release file
	Cmdline string // the kernel command line
	Kernel  string // vmlinuz
	Initrd  string // initrd.img
	Epoch   uint32 // the PE header's time stamp
}

// section is one section added to the stub.
type section struct {
	name, file string
	size       int64
}

// Build writes the UKI to out: the stub with .osrel, .cmdline, .initrd and
// .linux sections added by objcopy, each placed after the stub's last
// section at the stub's section alignment, as systemd-stub(7) describes.
// objcopy stamps the current time into the PE header: Build replaces it
// with u.Epoch and recomputes the checksum, so the result is reproducible.
func (u UKI) Build(ctx context.Context, out string) error {
	stub := u.Stub
	if stub == "" {
		stub = StubPath
	}
	if _, err := os.Stat(stub); err != nil {
		return fmt.Errorf("image: uki: the systemd-boot stub is missing (apt-get install systemd-boot-efi): %w", err)
	}
	if _, err := exec.LookPath("objcopy"); err != nil {
		return errors.New("image: uki: objcopy is not installed (apt-get install binutils)")
	}
	cmdline := filepath.Join(filepath.Dir(out), "cmdline.txt")
	if err := os.WriteFile(cmdline, []byte(u.Cmdline+"\n"), 0o644); err != nil {
		return fmt.Errorf("image: uki: %w", err)
	}
	defer os.Remove(cmdline)
	secs := []section{{name: ".osrel", file: u.OSRel}, {name: ".cmdline", file: cmdline}, {name: ".initrd", file: u.Initrd}, {name: ".linux", file: u.Kernel}}
	for i := range secs {
		fi, err := os.Stat(secs[i].file)
		if err != nil {
			return fmt.Errorf("image: uki: %w", err)
		}
		secs[i].size = fi.Size()
	}
	next, align, err := stubEnd(stub)
	if err != nil {
		return err
	}
	args := []string{}
	for _, s := range secs {
		next = alignUp(next, align)
		args = append(args, "--add-section", s.name+"="+s.file, "--change-section-vma", s.name+"=0x"+strconv.FormatUint(next, 16))
		next += uint64(s.size)
	}
	args = append(args, stub, out)
	if b, err := exec.CommandContext(ctx, "objcopy", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("image: uki: objcopy: %w\n%s", err, b)
	}
	return stampPE(out, u.Epoch)
}

// stubEnd returns the first address after the stub's sections and the
// alignment new sections take (at least a page).
func stubEnd(stub string) (end, align uint64, err error) {
	f, err := pe.Open(stub)
	if err != nil {
		return 0, 0, fmt.Errorf("image: uki: %s: %w", stub, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return 0, 0, fmt.Errorf("image: uki: %s is not a 64-bit PE", stub)
	}
	for _, s := range f.Sections {
		end = max(end, oh.ImageBase+uint64(s.VirtualAddress)+uint64(max(s.VirtualSize, s.Size)))
	}
	return end, max(uint64(oh.SectionAlignment), 4096), nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// stampPE sets a PE file's COFF time stamp and recomputes its checksum.
func stampPE(path string, stamp uint32) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("image: uki: %w", err)
	}
	if len(data) < 0x40 {
		return errors.New("image: uki: output too short")
	}
	peOff := int(binary.LittleEndian.Uint32(data[0x3c:]))
	if peOff+24+68 > len(data) || string(data[peOff:peOff+4]) != "PE\x00\x00" {
		return errors.New("image: uki: output is not a PE file")
	}
	binary.LittleEndian.PutUint32(data[peOff+8:], stamp)
	sumOff := peOff + 24 + 64 // the optional header's CheckSum
	binary.LittleEndian.PutUint32(data[sumOff:], peChecksum(data, sumOff))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("image: uki: %w", err)
	}
	return nil
}

// peChecksum is the PE image checksum: 16-bit one's-complement-style sum
// of the file with the checksum field skipped, plus the file's length.
func peChecksum(data []byte, sumOff int) uint32 {
	var sum uint64
	b := slices.Clone(data)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	for i := 0; i < len(b); i += 2 {
		if i == sumOff || i == sumOff+2 {
			continue
		}
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(data))
}

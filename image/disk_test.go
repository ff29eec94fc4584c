package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/pe"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

func TestParseUsedInodes(t *testing.T) {
	out := []byte(`Filesystem volume name:   root
Inodes per group:         8
Group 0: (Blocks 0-32767) csum 0xadb0
  Primary superblock at 0, Group descriptors at 1-1
  Free inodes: 6-8
Group 1: (Blocks 32768-65535) csum 0xe191 [INODE_UNINIT]
  Free inodes: 9-16
Group 2: (Blocks 65536-98303) csum 0x1f1c
  Free inodes: 17, 19-20, 23-24
`)
	got, err := parseUsedInodes(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{1, 2, 3, 4, 5, 18, 21, 22}
	if !slices.Equal(got, want) {
		t.Fatalf("used %v, want %v", got, want)
	}
}

// smallTree is a tree with a file, a hard link, a symlink, a setuid file
// and an owner.
func smallTree(t *testing.T) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	writeFile(t, filepath.Join(tree, "etc/hostname"), "node\n", 0o644)
	writeFile(t, filepath.Join(tree, "usr/bin/tool"), "#!/bin/sh\n", 0o755)
	if err := os.Chmod(filepath.Join(tree, "usr/bin/tool"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(tree, "etc/hostname"), filepath.Join(tree, "etc/hostname.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../usr/bin/tool", filepath.Join(tree, "etc/tool")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(tree, "etc/hostname"), 33, 33); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func TestMakeExt4IsReproducible(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs", "dumpe2fs", "e2fsck")
	ctx := context.Background()
	tree := smallTree(t)
	var ids [32]byte
	l, err := newLayout(256*mib, 64*mib, ids)
	if err != nil {
		t.Fatal(err)
	}
	var images [][]byte
	for i := range 2 {
		if err := clampTimes(tree, 1700000000); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(t.TempDir(), "root.ext4")
		if err := makeExt4(ctx, ext4Spec{tree: tree, out: img, size: 64 * mib, uuid: l.rootUUID, hashSeed: l.rootHashSeed, epoch: 1700000000}); err != nil {
			t.Fatal(err)
		}
		run(t, "e2fsck", "-fn", img)
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, data)
		if i == 0 {
			stat := run(t, "debugfs", "-R", "stat /usr/bin/tool", img)
			for _, want := range []string{"Mode:  04755", "ctime: 0x6553f100:00000000", "atime: 0x6553f100:00000000", "mtime: 0x6553f100:00000000"} {
				if !strings.Contains(stat, want) {
					t.Errorf("stat /usr/bin/tool lacks %q:\n%s", want, stat)
				}
			}
			if os.Geteuid() == 0 && !strings.Contains(run(t, "debugfs", "-R", "stat /etc/hostname", img), "User:    33") {
				t.Error("the owner was lost")
			}
			if !strings.Contains(run(t, "debugfs", "-R", "stat /etc/hostname.link", img), "Links: 2") {
				t.Error("the hard link became a copy")
			}
			// Touch every inode's ctime: the next image must not see it.
			time.Sleep(1100 * time.Millisecond)
			os.Chmod(filepath.Join(tree, "etc/hostname"), 0o600)
			os.Chmod(filepath.Join(tree, "etc/hostname"), 0o644)
			os.Chmod(filepath.Join(tree, "usr/bin/tool"), 0o755)
			os.Chmod(filepath.Join(tree, "usr/bin/tool"), os.ModeSetuid|0o755)
		}
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Fatal("the same tree made two different filesystems")
	}
}

// fakeStubUKI builds a UKI from the real stub with made-up kernel parts.
func fakeUKI(t *testing.T, dir string, epoch uint32) string {
	t.Helper()
	need(t, "objcopy")
	if _, err := os.Stat(StubPath); err != nil {
		t.Fatalf("systemd-boot-efi is required (scripts/deps.sh installs it): %v", err)
	}
	parts := map[string][]byte{"os-release": []byte("ID=debian\nVERSION_ID=\"12\"\n")}
	for _, p := range []string{"vmlinuz", "initrd"} {
		b := make([]byte, 300_000)
		h := sha256.Sum256([]byte(p))
		for i := range b {
			b[i] = h[i%len(h)] ^ byte(i)
		}
		parts[p] = b
	}
	for name, b := range parts {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "BOOTX64.EFI")
	u := UKI{OSRel: filepath.Join(dir, "os-release"), Cmdline: DefaultCmdline, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), Epoch: epoch}
	if err := u.Build(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUKI(t *testing.T) {
	dir := t.TempDir()
	out := fakeUKI(t, dir, 1700000000)
	f, err := pe.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.TimeDateStamp != 1700000000 {
		t.Errorf("time stamp %d", f.TimeDateStamp)
	}
	var last uint32
	for _, name := range []string{".osrel", ".cmdline", ".initrd", ".linux"} {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("no %s section", name)
		}
		if s.VirtualAddress%4096 != 0 || s.VirtualAddress <= last {
			t.Errorf("%s at %#x: want page-aligned, after %#x", name, s.VirtualAddress, last)
		}
		last = s.VirtualAddress + s.VirtualSize
	}
	cmdline, _ := f.Section(".cmdline").Data()
	if !strings.HasPrefix(string(cmdline), DefaultCmdline) {
		t.Errorf(".cmdline %q", cmdline)
	}
	// The checksum is the PE checksum of the file as written.
	data, _ := os.ReadFile(out)
	off := int(binary.LittleEndian.Uint32(data[0x3c:])) + 24 + 64
	if got := binary.LittleEndian.Uint32(data[off:]); got != peChecksum(data, off) || got == 0 {
		t.Errorf("checksum %#x, want %#x", got, peChecksum(data, off))
	}
	// objcopy's own checksum, before stamping, agrees with peChecksum.
	raw := filepath.Join(dir, "plain.efi")
	if b, err := exec.Command("objcopy", "--add-section", ".osrel="+filepath.Join(dir, "os-release"), "--change-section-vma", ".osrel=0x40000", StubPath, raw).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, b)
	}
	plain, _ := os.ReadFile(raw)
	off = int(binary.LittleEndian.Uint32(plain[0x3c:])) + 24 + 64
	if got := binary.LittleEndian.Uint32(plain[off:]); got != peChecksum(plain, off) {
		t.Errorf("objcopy's checksum %#x, peChecksum %#x", got, peChecksum(plain, off))
	}
	again := fakeUKI(t, t.TempDir(), 1700000000)
	if a, b := mustRead(t, out), mustRead(t, again); !bytes.Equal(a, b) {
		t.Error("two UKIs from the same parts differ")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteDisk(t *testing.T) {
	need(t, "mkfs.ext4", "debugfs", "dumpe2fs", "e2fsck", "sgdisk", "fsck.vfat")
	ctx := context.Background()
	dir := t.TempDir()
	uki := fakeUKI(t, dir, 1700000000)
	tree := smallTree(t)
	if err := clampTimes(tree, 1700000000); err != nil {
		t.Fatal(err)
	}
	var ids [32]byte
	rand.Read(ids[:])
	l, err := newLayout(256*mib, espSize(64*mib), ids)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.ext4")
	if err := makeExt4(ctx, ext4Spec{tree: tree, out: root, size: l.rootBytes, uuid: l.rootUUID, hashSeed: l.rootHashSeed, epoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	var raws []string
	for i := range 2 {
		raw := filepath.Join(dir, "disk"+string(rune('a'+i))+".raw")
		var last int64
		if err := writeDisk(raw, l, uki, root, 1700000000, func(n, _ int64) { last = n }); err != nil {
			t.Fatal(err)
		}
		if last != l.rootBytes {
			t.Errorf("progress ended at %d of %d", last, l.rootBytes)
		}
		raws = append(raws, raw)
	}
	raw := raws[0]
	if !bytes.Equal(mustRead(t, raws[0]), mustRead(t, raws[1])) {
		t.Fatal("two disks from the same inputs differ")
	}
	if out := run(t, "sgdisk", "-v", raw); !strings.Contains(out, "No problems found") || strings.Contains(out, "Caution") {
		t.Fatalf("sgdisk -v:\n%s", out)
	}
	parts, err := Partitions(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].Type != string(gpt.EFISystemPartition) || parts[1].Type != string(gpt.LinuxRootX86_64) ||
		parts[1].Name != RootLabel || strings.ToLower(parts[1].GUID) != l.rootGUID || parts[0].Start != 1*mib {
		t.Fatalf("partitions %+v", parts)
	}
	esp := filepath.Join(dir, "esp.img")
	if err := ExtractPartition(raw, parts[0], esp); err != nil {
		t.Fatal(err)
	}
	run(t, "fsck.vfat", "-n", esp)
	ext := filepath.Join(dir, "root.img")
	if err := ExtractPartition(raw, parts[1], ext); err != nil {
		t.Fatal(err)
	}
	run(t, "e2fsck", "-fn", ext)
	if out := run(t, "dumpe2fs", "-h", ext); !strings.Contains(out, "Filesystem volume name:   "+RootLabel) || !strings.Contains(out, l.rootUUID) {
		t.Errorf("root filesystem:\n%s", out)
	}
	espData := mustRead(t, esp)
	if got := binary.LittleEndian.Uint32(espData[0x43:]); got != l.fatSerial {
		t.Errorf("FAT serial %#x, want %#x", got, l.fatSerial)
	}
	d, err := diskfs.Open(raw, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := fs.ReadFile(strings.TrimPrefix(BootPath, "/"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(boot, mustRead(t, uki)) {
		t.Error(BootPath + " is not the UKI")
	}
}

func TestLayout(t *testing.T) {
	var ids [32]byte
	l, err := newLayout(2<<30, 128*mib, ids)
	if err != nil {
		t.Fatal(err)
	}
	if l.espStart != 2048 || l.rootStart != l.espEnd+1 || (l.rootEnd+1)%2048 != 0 || l.rootEnd >= uint64(2<<30/512-33) {
		t.Fatalf("layout %+v", l)
	}
	if l.rootBytes != int64(l.rootEnd-l.rootStart+1)*512 {
		t.Fatalf("root bytes %d", l.rootBytes)
	}
	if _, err := newLayout(100*mib, 64*mib, ids); err == nil {
		t.Fatal("a 100 MiB disk with a 64 MiB ESP has no room for a root")
	}
	other := ids
	other[0] = 1
	if l2, _ := newLayout(2<<30, 128*mib, other); l2.diskGUID == l.diskGUID || l2.rootUUID == l.rootUUID {
		t.Fatal("different inputs, same GUIDs")
	}
}

func TestESPSize(t *testing.T) {
	if fatLayoutSound(64 * mib) {
		t.Fatal("64 MiB is one of the sizes go-diskfs lays out wrong")
	}
	for _, min := range []int64{33 * mib, 64 * mib, 128 * mib, 129*mib + 1, 300 * mib} {
		s := espSize(min)
		if s < min || s%mib != 0 || s > min+8*mib || !fatLayoutSound(s) {
			t.Errorf("espSize(%d) = %d", min, s)
		}
	}
}

func TestReadProgress(t *testing.T) {
	var got []int64
	readProgress(strings.NewReader("    (0.00/100%)\r    (12.50/100%)\r    (100.00/100%)\n"), func(n, total int64) {
		if total != 10000 {
			t.Errorf("total %d", total)
		}
		got = append(got, n)
	})
	if !slices.Equal(got, []int64{0, 1250, 10000}) {
		t.Fatalf("progress %v", got)
	}
}

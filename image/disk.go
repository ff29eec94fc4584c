package image

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

const (
	sector    = 512
	mib       = 1 << 20
	gptFirst  = 2048 // the first partition starts at 1 MiB
	gptBackup = 33   // sectors the backup GPT takes at the end
	// ESPLabel is the EFI system partition's FAT volume label.
	ESPLabel = "ESP"
	// BootPath is where the UKI lies on the ESP: the removable-media path
	// UEFI firmware boots without any boot entry.
	BootPath = "/EFI/BOOT/BOOTX64.EFI"
)

// layout is where the partitions of a disk lie, in sectors (ends inclusive).
type layout struct {
	size                   int64
	espStart, espEnd       uint64
	rootStart, rootEnd     uint64
	rootBytes              int64 // the ext4 filesystem's size: the partition rounded down to 1 MiB
	espBytes               int64
	diskGUID, espGUID      string
	rootGUID               string
	fatSerial              uint32
	rootUUID, rootHashSeed string
}

// newLayout places a FAT32 ESP of espBytes at 1 MiB and the root after it
// up to the backup GPT. ids seeds every GUID, UUID and serial.
func newLayout(size, espBytes int64, ids [32]byte) (layout, error) {
	l := layout{size: size, espBytes: espBytes}
	if size%mib != 0 || espBytes%mib != 0 {
		return l, fmt.Errorf("image: disk: sizes must be whole MiB (disk %d, ESP %d)", size, espBytes)
	}
	l.espStart = gptFirst
	l.espEnd = l.espStart + uint64(espBytes/sector) - 1
	l.rootStart = l.espEnd + 1
	// The last usable sector is before the backup GPT (its 32 entry
	// sectors and header); the root ends on a 1 MiB boundary below it.
	last := uint64(size/sector) - gptBackup - 1
	l.rootEnd = (last+1)/gptFirst*gptFirst - 1
	if l.rootEnd <= l.rootStart+uint64(64*mib/sector) {
		return l, fmt.Errorf("image: disk: %d MiB leaves no room for a root filesystem", size/mib)
	}
	l.rootBytes = int64(l.rootEnd-l.rootStart+1) * sector
	l.diskGUID = derivedUUID(ids, "disk")
	l.espGUID = derivedUUID(ids, "esp")
	l.rootGUID = derivedUUID(ids, "root-partition")
	l.rootUUID = derivedUUID(ids, "root-filesystem")
	l.rootHashSeed = derivedUUID(ids, "root-hash-seed")
	s := sha256.Sum256(append(ids[:], "fat-serial"...))
	l.fatSerial = binary.LittleEndian.Uint32(s[:4])
	return l, nil
}

// espSize is the smallest size of at least min bytes, in whole MiB, whose
// FAT32 layout as go-diskfs v1.9.4 computes it is sound: its
// sectors-per-FAT formula leaves out the FAT's two reserved entries, so
// for some sizes the FAT has room for two clusters fewer than the
// filesystem has (fsck.vfat: "has N clusters but only space for N-2 FAT
// entries"). Those sizes are skipped.
func espSize(min int64) int64 {
	size := int64(alignUp(uint64(min), mib))
	for !fatLayoutSound(size) {
		size += mib
	}
	return size
}

// fatLayoutSound mirrors go-diskfs's FAT32 layout for a size and checks
// that the FAT holds an entry for every cluster.
func fatLayoutSound(size int64) bool {
	const reserved = 32
	spc := int64(1) // sectors per cluster: 512-byte clusters up to 260 MB
	if size > 260*1000*1000 {
		spc = 8
	}
	total := size / sector
	denom := sector*spc + 8
	perFAT := (4*(total-reserved) + denom - 1) / denom
	clusters := (total - reserved - 2*perFAT) / spc
	return perFAT*sector/4 >= clusters+2
}

// derivedUUID is a version-4-shaped UUID derived from ids and a purpose.
func derivedUUID(ids [32]byte, purpose string) string {
	s := sha256.Sum256(append(ids[:], purpose...))
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

// writeDisk writes the raw disk: the GPT, the ESP with the UKI at
// BootPath, and the root filesystem image copied sparsely into its
// partition. done reports the root's bytes as they are copied.
func writeDisk(raw string, l layout, uki, root string, epoch int64, done func(n, total int64)) error {
	d, err := diskfs.Create(raw, l.size, diskfs.SectorSize512)
	if err != nil {
		return fmt.Errorf("image: disk %s: %w", raw, err)
	}
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               l.diskGUID,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: l.espStart, End: l.espEnd, Type: gpt.EFISystemPartition, Name: "ESP", GUID: l.espGUID},
			{Index: 2, Start: l.rootStart, End: l.rootEnd, Type: gpt.LinuxRootX86_64, Name: RootLabel, GUID: l.rootGUID},
		},
	}
	if err := d.Partition(table); err != nil {
		d.Close()
		return fmt.Errorf("image: disk %s: partition: %w", raw, err)
	}
	if err := writeESP(d, uki, epoch); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("image: disk %s: %w", raw, err)
	}
	if err := fixFAT32(raw, int64(l.espStart)*sector, l.fatSerial); err != nil {
		return err
	}
	return copySparse(root, raw, int64(l.rootStart)*sector, done)
}

// epochMu guards SOURCE_DATE_EPOCH, which go-diskfs reads for FAT time
// stamps.
var epochMu sync.Mutex

// writeESP makes the FAT32 ESP and puts the UKI at BootPath.
func writeESP(d *disk.Disk, uki string, epoch int64) error {
	epochMu.Lock()
	defer epochMu.Unlock()
	prev, had := os.LookupEnv("SOURCE_DATE_EPOCH")
	os.Setenv("SOURCE_DATE_EPOCH", fmt.Sprint(epoch))
	defer func() {
		if had {
			os.Setenv("SOURCE_DATE_EPOCH", prev)
		} else {
			os.Unsetenv("SOURCE_DATE_EPOCH")
		}
	}()
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 1, FSType: filesystem.TypeFat32, VolumeLabel: ESPLabel, Reproducible: true})
	if err != nil {
		return fmt.Errorf("image: ESP: %w", err)
	}
	if err := fs.Mkdir("/EFI/BOOT"); err != nil {
		return fmt.Errorf("image: ESP: %w", err)
	}
	src, err := os.Open(uki)
	if err != nil {
		return fmt.Errorf("image: ESP: %w", err)
	}
	defer src.Close()
	dst, err := fs.OpenFile(BootPath, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("image: ESP: %s: %w", BootPath, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		return fmt.Errorf("image: ESP: %s: %w", BootPath, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("image: ESP: %s: %w", BootPath, err)
	}
	return nil
}

// fixFAT32 finishes the FAT32 filesystem go-diskfs wrote at off in raw: it
// sets the volume serial (BS_VolID) in the boot sector and its backup,
// points the ".." entry of the root's subfolders at cluster 0 as the FAT
// specification wants (go-diskfs writes the root's cluster; fsck.vfat
// calls that invalid), and fills the FSInfo sector's free-cluster count and
// next-free hint, which go-diskfs leaves unknown.
func fixFAT32(raw string, off int64, serial uint32) error {
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("image: ESP: %w", err)
	}
	defer f.Close()
	boot := make([]byte, sector)
	if _, err := f.ReadAt(boot, off); err != nil {
		return fmt.Errorf("image: ESP: %w", err)
	}
	le16 := func(b []byte) int64 { return int64(binary.LittleEndian.Uint16(b)) }
	le32 := func(b []byte) int64 { return int64(binary.LittleEndian.Uint32(b)) }
	bps, spc, reserved, nfats := le16(boot[0x0b:]), int64(boot[0x0d]), le16(boot[0x0e:]), int64(boot[0x10])
	total, perFAT, rootCluster := le32(boot[0x20:]), le32(boot[0x24:]), le32(boot[0x2c:])
	fsinfo, backup := le16(boot[0x30:]), le16(boot[0x32:])
	if bps != sector || spc == 0 || nfats == 0 || perFAT == 0 {
		return fmt.Errorf("image: ESP: not the FAT32 boot sector expected")
	}
	fat := make([]byte, perFAT*bps)
	if _, err := f.ReadAt(fat, off+reserved*bps); err != nil {
		return fmt.Errorf("image: ESP: FAT: %w", err)
	}
	entry := func(c int64) int64 { return le32(fat[c*4:]) & 0x0fffffff }
	dataStart := off + (reserved+nfats*perFAT)*bps
	clusterBytes := spc * bps
	clusters := (total - reserved - nfats*perFAT) / spc

	// The root's subfolders: their ".." entry is the second of their
	// first cluster.
	for c := rootCluster; c >= 2 && c < clusters+2; c = entry(c) {
		dir := make([]byte, clusterBytes)
		if _, err := f.ReadAt(dir, dataStart+(c-2)*clusterBytes); err != nil {
			return fmt.Errorf("image: ESP: %w", err)
		}
		for e := 0; e+32 <= len(dir); e += 32 {
			d := dir[e : e+32]
			if d[0] == 0 {
				break
			}
			if d[0] == 0xe5 || d[11]&0x0f == 0x0f || d[11]&0x10 == 0 || d[0] == '.' {
				continue
			}
			sub := le16(d[0x14:])<<16 | le16(d[0x1a:])
			at := dataStart + (sub-2)*clusterBytes + 32
			dotdot := make([]byte, 32)
			if _, err := f.ReadAt(dotdot, at); err != nil {
				return fmt.Errorf("image: ESP: %w", err)
			}
			if string(dotdot[:11]) == "..         " && le16(dotdot[0x14:])<<16|le16(dotdot[0x1a:]) == rootCluster {
				if _, err := f.WriteAt(make([]byte, 2), at+0x14); err != nil {
					return fmt.Errorf("image: ESP: %w", err)
				}
				if _, err := f.WriteAt(make([]byte, 2), at+0x1a); err != nil {
					return fmt.Errorf("image: ESP: %w", err)
				}
			}
		}
	}

	free, next := int64(0), int64(-1)
	for c := int64(2); c < clusters+2; c++ {
		if entry(c) == 0 {
			free++
			if next < 0 {
				next = c
			}
		}
	}
	var b [4]byte
	for _, w := range []struct {
		at  int64
		val uint32
	}{
		{0x43, serial}, {backup*bps + 0x43, serial},
		{fsinfo*bps + 0x1e8, uint32(free)}, {fsinfo*bps + 0x1ec, uint32(next)},
		{(backup+1)*bps + 0x1e8, uint32(free)}, {(backup+1)*bps + 0x1ec, uint32(next)},
	} {
		binary.LittleEndian.PutUint32(b[:], w.val)
		if _, err := f.WriteAt(b[:], off+w.at); err != nil {
			return fmt.Errorf("image: ESP: %w", err)
		}
	}
	return nil
}

// copySparse copies src into dst at off, data extents only: the holes of
// src stay holes in dst.
func copySparse(src, dst string, off int64, done func(n, total int64)) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("image: copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("image: copy into %s: %w", dst, err)
	}
	defer out.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("image: copy %s: %w", src, err)
	}
	size := fi.Size()
	fd := int(in.Fd())
	buf := make([]byte, 4*mib)
	var pos int64
	for pos < size {
		start, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return fmt.Errorf("image: copy %s: seek data: %w", src, err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("image: copy %s: seek hole: %w", src, err)
		}
		for p := start; p < end; {
			n := min(int64(len(buf)), end-p)
			if _, err := in.ReadAt(buf[:n], p); err != nil {
				return fmt.Errorf("image: copy %s: %w", src, err)
			}
			if _, err := out.WriteAt(buf[:n], off+p); err != nil {
				return fmt.Errorf("image: copy into %s: %w", dst, err)
			}
			p += n
			if done != nil {
				done(p, size)
			}
		}
		pos = end
	}
	if done != nil {
		done(size, size)
	}
	return out.Sync()
}

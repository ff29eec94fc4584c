package image

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Stages of a bake, in the order they run.
const (
	StageRootfs     = "rootfs"     // the cached Debian root, built when missing
	StageConfigure  = "configure"  // the root unpacked, the node's files and units put in
	StageFilesystem = "filesystem" // the ext4 root made from it
	StageDisk       = "disk"       // the GPT, the ESP with the UKI, the root copied in
	StageConvert    = "convert"    // the qcow2 made
)

// Stages lists every stage in order.
var Stages = []string{StageRootfs, StageConfigure, StageFilesystem, StageDisk, StageConvert}

// Progress is told how a bake advances: done of total units of stage
// (files, bytes, hundredths of a percent). Each stage reports 0 of total
// when it starts and total of total when it ends.
type Progress func(stage string, done, total int64)

// Defaults.
const (
	// DefaultSize is the disk's size; the root grows to a bigger disk at boot.
	DefaultSize = 2 << 30
	// DefaultCmdline is the kernel command line in the UKI: root by label,
	// console on the first serial port (and the screen), no interactive
	// systemd-firstboot.
	DefaultCmdline = "root=LABEL=" + RootLabel + " ro rootwait console=tty0 console=ttyS0,115200n8 systemd.firstboot=off"
)

// Spec is one image to bake.
type Spec struct {
	Rootfs   RootfsSpec  // the Debian root filesystem
	Content  Content     // the node's (or golden image's) files and units
	Binary   string      // the ztwizard binary, installed at steps.BinaryPath
	Overlay  string      // a folder copied over the root last; units it adds are enabled
	Golden   bool        // refuse to write the image if any private key is in it
	Size     int64       // the disk's size in bytes (whole MiB); DefaultSize when 0
	Epoch    int64       // every time stamp (SOURCE_DATE_EPOCH); the rootfs's when 0
	Cmdline  string      // the kernel command line; DefaultCmdline when empty
	Out      string      // the image file
	Format   string      // FormatQcow2 (default) or FormatRaw
	Compress bool        // zlib-compressed qcow2
	Mode     os.FileMode // the image file's mode; 0600 when 0
	WorkDir  string      // where the work happens; a private folder next to Out when empty
	Progress Progress    // told as stages advance; may be nil
	Log      io.Writer   // the tools' output (mmdebstrap); may be nil
}

// Result is what a bake made and how long each stage took.
type Result struct {
	Out       string                   // the image file
	Rootfs    *RootfsInfo              // the root filesystem it was made from
	Epoch     int64                    // the time stamps it carries
	Kernel    string                   // the kernel version in the UKI
	RawSize   int64                    // the raw disk's size
	FileSize  int64                    // the image file's size
	Skipped   []string                 // units to enable that the root does not have
	Durations map[string]time.Duration // per stage
}

// Bake builds the image spec describes: the stages in order, each reported
// to spec.Progress. The image appears at spec.Out only when complete.
func Bake(ctx context.Context, spec Spec) (*Result, error) {
	if err := spec.check(); err != nil {
		return nil, err
	}
	res := &Result{Out: spec.Out, Durations: map[string]time.Duration{}}
	report := func(stage string, done, total int64) {
		if spec.Progress != nil {
			spec.Progress(stage, done, total)
		}
	}
	// within a stage, done stays below total: total marks the stage's end.
	inner := func(stage string) func(n, total int64) {
		return func(n, total int64) { report(stage, min(max(n, 1), total-1), total) }
	}
	stage := func(name string, total int64, f func() error) error {
		start := time.Now()
		report(name, 0, total)
		if err := f(); err != nil {
			return err
		}
		res.Durations[name] = time.Since(start)
		report(name, total, total)
		return nil
	}

	var info *RootfsInfo
	err := stage(StageRootfs, 1, func() (err error) {
		info, err = Rootfs(ctx, spec.Rootfs)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Rootfs = info
	res.Epoch = spec.Epoch
	if res.Epoch == 0 {
		res.Epoch = info.Epoch
	}

	work, err := workDir(spec)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	tree := filepath.Join(work, "root")
	ids, err := spec.ids(info, res.Epoch)
	if err != nil {
		return nil, err
	}

	err = stage(StageConfigure, int64(max(1, len(spec.Content.Files))), func() error {
		if err := os.Mkdir(tree, 0o755); err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if err := extract(ctx, info.Tar, tree); err != nil {
			return err
		}
		skipped, err := configure(tree, spec, res.Epoch)
		res.Skipped = skipped
		return err
	})
	if err != nil {
		return nil, err
	}

	uki := filepath.Join(work, "BOOTX64.EFI")
	rootImg := filepath.Join(work, "root.ext4")
	var l layout
	err = stage(StageFilesystem, 1, func() error {
		kernel, initrd, version, err := findKernel(tree)
		if err != nil {
			return err
		}
		res.Kernel = version
		u := UKI{OSRel: filepath.Join(tree, "usr/lib/os-release"), Cmdline: spec.Cmdline, Kernel: kernel, Initrd: initrd, Epoch: uint32(res.Epoch)}
		if err := u.Build(ctx, uki); err != nil {
			return err
		}
		// The UKI on the ESP is what boots: the root keeps no second copy.
		// /boot keeps the time stamp configure clamped it to.
		boot, err := os.Stat(filepath.Dir(kernel))
		if err != nil {
			return fmt.Errorf("image: %w", err)
		}
		at := boot.ModTime()
		if err := errors.Join(os.Remove(kernel), os.Remove(initrd), os.Chtimes(filepath.Dir(kernel), at, at)); err != nil {
			return fmt.Errorf("image: %w", err)
		}
		fi, err := os.Stat(uki)
		if err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if l, err = newLayout(spec.Size, espSize(max(128*mib, fi.Size()+32*mib)), ids); err != nil {
			return err
		}
		need, err := treeSize(tree)
		if err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if need+need/5+64*mib > l.rootBytes {
			return fmt.Errorf("image: the root needs about %d MiB and the disk leaves %d MiB for it: raise --size", (need+need/5+64*mib)/mib, l.rootBytes/mib)
		}
		if err := makeExt4(ctx, ext4Spec{tree: tree, out: rootImg, size: l.rootBytes, uuid: l.rootUUID, hashSeed: l.rootHashSeed, epoch: res.Epoch}); err != nil {
			return err
		}
		return os.RemoveAll(tree)
	})
	if err != nil {
		return nil, err
	}

	raw := filepath.Join(work, "disk.raw")
	err = stage(StageDisk, l.rootBytes, func() error {
		return writeDisk(raw, l, uki, rootImg, res.Epoch, inner(StageDisk))
	})
	if err != nil {
		return nil, err
	}
	os.Remove(rootImg)
	res.RawSize = spec.Size

	final := filepath.Join(work, "disk."+spec.Format)
	err = stage(StageConvert, 10000, func() error {
		return outputs[spec.Format](ctx, raw, final, spec.Compress, inner(StageConvert))
	})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(final, spec.Mode); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if err := os.Rename(final, spec.Out); err != nil {
		return nil, fmt.Errorf("image: %s: %w", spec.Out, err)
	}
	if fi, err := os.Stat(spec.Out); err == nil {
		res.FileSize = fi.Size()
	}
	return res, nil
}

// check fills defaults and refuses a spec that cannot work.
func (s *Spec) check() error {
	if s.Out == "" {
		return errors.New("image: no output file")
	}
	if s.Size == 0 {
		s.Size = DefaultSize
	}
	if s.Size%mib != 0 {
		s.Size = int64(alignUp(uint64(s.Size), mib))
	}
	if s.Cmdline == "" {
		s.Cmdline = DefaultCmdline
	}
	if s.Mode == 0 {
		s.Mode = 0o600
	}
	if s.Format == "" {
		s.Format = FormatQcow2
	}
	if _, ok := outputs[s.Format]; !ok {
		return fmt.Errorf("image: format %q: want qcow2 or raw", s.Format)
	}
	if s.Compress && s.Format != FormatQcow2 {
		return errors.New("image: only qcow2 images can be compressed")
	}
	if s.Binary == "" {
		return errors.New("image: no ztwizard binary to install")
	}
	if s.Overlay != "" {
		if fi, err := os.Stat(s.Overlay); err != nil || !fi.IsDir() {
			return fmt.Errorf("image: overlay %s: not a folder", s.Overlay)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("image: baking needs root (the root filesystem keeps its files' owners)")
	}
	return nil
}

// workDir makes the private folder the work happens in.
func workDir(s Spec) (string, error) {
	dir := s.WorkDir
	if dir == "" {
		dir = filepath.Dir(s.Out)
	}
	w, err := os.MkdirTemp(dir, ".ztwizard-bake-")
	if err != nil {
		return "", fmt.Errorf("image: work folder: %w", err)
	}
	return w, nil
}

// ids hashes the inputs that make the image: the GUIDs, UUIDs and serials
// derive from it, so the same inputs give the same disk.
func (s Spec) ids(info *RootfsInfo, epoch int64) ([32]byte, error) {
	h := sha256.New()
	fmt.Fprintf(h, "ztwizard-image v1\nrootfs %s\nsite %s\nnode %s\nhost %s\nsize %d\ncmdline %s\n",
		info.Key, s.Content.Site, s.Content.Node, s.Content.Hostname, s.Size, s.Cmdline)
	binary.Write(h, binary.LittleEndian, epoch)
	for _, f := range s.Content.Files {
		sum := sha256.Sum256(f.Content)
		fmt.Fprintf(h, "file %s %o %s %s %x\n", f.Path, f.Mode, f.Owner, f.Group, sum)
	}
	fmt.Fprintf(h, "enable %s\n", strings.Join(s.Content.Enable, " "))
	bin, err := os.Open(s.Binary)
	if err != nil {
		return [32]byte{}, fmt.Errorf("image: binary: %w", err)
	}
	defer bin.Close()
	if _, err := io.Copy(h, bin); err != nil {
		return [32]byte{}, fmt.Errorf("image: binary: %w", err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// findKernel returns the newest kernel and initrd in the tree's /boot.
func findKernel(tree string) (kernel, initrd, version string, err error) {
	matches, _ := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	slices.Sort(matches)
	for i := len(matches) - 1; i >= 0; i-- {
		v := strings.TrimPrefix(filepath.Base(matches[i]), "vmlinuz-")
		rd := filepath.Join(tree, "boot", "initrd.img-"+v)
		if _, err := os.Stat(rd); err == nil {
			return matches[i], rd, v, nil
		}
	}
	return "", "", "", errors.New("image: no kernel with an initrd in the root's /boot (is linux-image-cloud-amd64 in the package set?)")
}

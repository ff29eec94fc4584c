package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// What a root filesystem leaves out, and how. A node reads no manual,
// documentation or translation, boots its kernel from the UKI on the ESP,
// and needs no Perl: these take about half of a plain Debian root. What a
// node needs (systemd, sshd, nginx, nftables, WireGuard, cloud-init, the
// kernel modules of its virtual hardware) stays; the modules are only
// compressed.

// mergedUsrHook is mmdebstrap's own hook that makes /bin, /sbin and /lib
// links into /usr before the first package is unpacked, as debootstrap
// does, so that apt installs usr-is-merged instead of usrmerge (which
// converts an unmerged root with Perl, pulling in 46 MB of it).
const mergedUsrHook = "/usr/share/mmdebstrap/hooks/merged-usr"

// DpkgFilters are the path filters dpkg applies to every package it
// unpacks, in order (the last match wins). mmdebstrap writes them to
// /etc/dpkg/dpkg.cfg.d in the root, so packages installed later on a node
// leave the same things out. Kept: each package's copyright file, the
// locale sources that `locale-gen en_US.UTF-8` (cloud-init's default
// locale) reads (en_US copies parts of en_GB), and the udev hardware database's entries that rules act
// on; left out: documentation, manual and info pages, translations, other
// locales' sources and charmaps, and the hardware database's vendor and
// model names (shown by `udevadm info`, acted on by no rule a server has).
// Debian's packages still ship /lib paths, so the udev filters name both.
var DpkgFilters = []string{
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/info/*",
	"path-exclude=/usr/share/lintian/*",
	"path-exclude=/usr/share/locale/*",
	"path-include=/usr/share/locale/locale.alias",
	"path-exclude=/usr/share/i18n/charmaps/*",
	"path-include=/usr/share/i18n/charmaps/UTF-8.gz",
	"path-exclude=/usr/share/i18n/locales/*",
	"path-include=/usr/share/i18n/locales/C",
	"path-include=/usr/share/i18n/locales/POSIX",
	"path-include=/usr/share/i18n/locales/en_US",
	"path-include=/usr/share/i18n/locales/en_GB",
	"path-include=/usr/share/i18n/locales/i18n*",
	"path-include=/usr/share/i18n/locales/iso14651_t1",
	"path-include=/usr/share/i18n/locales/iso14651_t1_common",
	"path-include=/usr/share/i18n/locales/translit_*",
	"path-exclude=/lib/udev/hwdb.d/20-*vendor*",
	"path-exclude=/usr/lib/udev/hwdb.d/20-*vendor*",
	"path-exclude=/lib/udev/hwdb.d/20-OUI.hwdb",
	"path-exclude=/usr/lib/udev/hwdb.d/20-OUI.hwdb",
}

// essentialHook runs once the essential packages are in, before the
// kernel and initramfs-tools: it configures the initramfs every kernel
// install makes. The root of an image is ext4, built into the cloud
// kernel, on a local disk: the initramfs needs the disk drivers but no
// network, network-filesystem or other filesystem modules, and xz packs
// it smaller than the default (the kernel unpacks xz).
const essentialHook = `set -eu
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
cat >"$1/etc/initramfs-tools/conf.d/ztwizard.conf" <<'EOF'
# ztwizard: the initramfs packed with xz (the kernel unpacks it).
COMPRESS=xz
EOF
cat >"$1/etc/initramfs-tools/hooks/zz-ztwizard-slim" <<'EOF'
#!/bin/sh
# ztwizard: the root is ext4 (built into the kernel) on a local disk, so
# the initramfs carries no network, network-filesystem or other
# filesystem modules; the disk drivers stay.
case "$1" in prereqs) exit 0 ;; esac
k="${DESTDIR}/lib/modules/${version}/kernel"
rm -rf "$k/drivers/net" "$k/drivers/infiniband" "$k/net" "$k/fs"
EOF
chmod 0755 "$1/etc/initramfs-tools/hooks/zz-ztwizard-slim"
`

// customizeHook runs once every package is in: it compresses the kernel's
// modules with xz as the kernel's own build does (modprobe reads them;
// mkinitramfs unpacks the ones it copies) and rebuilds their index.
const customizeHook = `set -eu
chroot "$1" sh -eu -c '
for d in /usr/lib/modules/*/; do
	[ -d "$d/kernel" ] || continue
	find "$d" -name "*.ko" -print0 | xargs -0 -r -n 64 xz --check=crc32 --lzma2=dict=1MiB
	depmod "$(basename "$d")"
done'
`

// mmdebstrapSlimArgs are mmdebstrap's options for the slimming.
func mmdebstrapSlimArgs() []string {
	args := []string{"--hook-dir=" + mergedUsrHook, "--essential-hook=" + essentialHook, "--customize-hook=" + customizeHook}
	for _, f := range DpkgFilters {
		args = append(args, "--dpkgopt="+f)
	}
	return args
}

// NodeModules are kernel modules every node loads or may load: the mesh,
// the firewall, and the virtual hardware of a KVM guest (disk, network,
// console, entropy).
var NodeModules = []string{
	"wireguard", "nf_tables", "nft_ct", "nft_chain_nat", "nf_conntrack",
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console", "virtio_rng",
}

// InitrdModules are the disk drivers the initramfs must keep to find the
// root on the usual virtual and cloud disks (NVMe is built into the
// cloud kernel, AHCI is not in it).
var InitrdModules = []string{"virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "xen_blkfront", "hv_storvsc", "ata_piix"}

// CheckSlim checks an image's root tree: nothing the slimming leaves out
// is in it, and what a node needs is. It lists every problem.
func CheckSlim(tree string) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	// Left out: documentation beyond copyright files, manuals, translations,
	// Perl's full installation, the kernel and initramfs in /boot.
	walk := func(dir string, ok func(rel string) bool, what string) {
		n, first := 0, ""
		filepath.WalkDir(filepath.Join(tree, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil // links left by packages whose files are out
			}
			rel, _ := filepath.Rel(filepath.Join(tree, dir), p)
			if !ok(rel) {
				if n == 0 {
					first = "/" + filepath.Join(dir, rel)
				}
				n++
			}
			return nil
		})
		if n > 0 {
			bad("%s: %d files, the first %s", what, n, first)
		}
	}
	walk("usr/share/doc", func(rel string) bool { return filepath.Base(rel) == "copyright" }, "documentation beyond copyright files")
	walk("usr/share/man", func(string) bool { return false }, "manual pages")
	walk("usr/share/info", func(rel string) bool { return rel == "dir" }, "info pages") // dir: install-info's index
	walk("usr/share/locale", func(rel string) bool { return !strings.HasSuffix(rel, ".mo") }, "translations")
	walk("usr/share/i18n/locales", func(rel string) bool {
		return slices.Contains([]string{"C", "POSIX", "en_US", "en_GB", "iso14651_t1", "iso14651_t1_common"}, rel) ||
			strings.HasPrefix(rel, "i18n") || strings.HasPrefix(rel, "translit_")
	}, "locale sources besides C and en_US")
	walk("usr/share/perl", func(string) bool { return false }, "Perl's modules")
	walk("usr/lib/udev/hwdb.d", func(rel string) bool {
		return !strings.Contains(rel, "vendor") && rel != "20-OUI.hwdb"
	}, "hardware vendor and model names")
	walk("boot", func(rel string) bool {
		return !strings.HasPrefix(rel, "vmlinuz") && !strings.HasPrefix(rel, "initrd")
	}, "a kernel or initramfs in /boot (the UKI has them)")
	walk("usr/lib/modules", func(rel string) bool { return !strings.HasSuffix(rel, ".ko") }, "uncompressed kernel modules")
	// Kept: the modules a node needs, listed in the index modprobe reads.
	versions, _ := filepath.Glob(filepath.Join(tree, "usr/lib/modules/*/modules.dep"))
	if len(versions) == 0 {
		bad("no kernel module index (usr/lib/modules/*/modules.dep)")
	}
	for _, dep := range versions {
		data, err := os.ReadFile(dep)
		if err != nil {
			bad("%v", err)
			continue
		}
		have := moduleIndex(string(data))
		for _, m := range NodeModules {
			p, ok := have[m]
			if !ok {
				bad("kernel %s: no module %s in modules.dep", filepath.Base(filepath.Dir(dep)), m)
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dep), p)); err != nil {
				bad("kernel %s: module %s: %v", filepath.Base(filepath.Dir(dep)), m, err)
			}
		}
	}
	for _, p := range []string{"usr/sbin/nginx", "usr/sbin/sshd", "usr/sbin/nft", "usr/bin/wg", "usr/lib/systemd/systemd", "usr/bin/xz"} {
		if _, err := os.Stat(filepath.Join(tree, p)); err != nil {
			bad("a node needs /%s: %v", p, err)
		}
	}
	return errors.Join(errs...)
}

// moduleIndex maps module names (dashes as underscores) to their paths in
// a modules.dep.
func moduleIndex(dep string) map[string]string {
	have := map[string]string{}
	for _, line := range strings.Split(dep, "\n") {
		p, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := filepath.Base(p)
		name = name[:strings.Index(name+".ko", ".ko")]
		have[strings.ReplaceAll(name, "-", "_")] = p
	}
	return have
}

// CheckInitrd checks the files of an initramfs (InitrdFiles): the disk
// drivers of InitrdModules are in it, and no module of the network or of a
// filesystem (the root's ext4 is built into the kernel).
func CheckInitrd(files []string) error {
	var errs []error
	have := map[string]bool{}
	extra, first := 0, ""
	for _, f := range files {
		i := strings.Index(f, "/kernel/")
		if i < 0 || !strings.Contains(filepath.Base(f), ".ko") {
			continue
		}
		rel := f[i+len("/kernel/"):]
		name := filepath.Base(rel)
		have[strings.ReplaceAll(name[:strings.Index(name, ".ko")], "-", "_")] = true
		for _, dir := range []string{"drivers/net/", "drivers/infiniband/", "net/", "fs/"} {
			if strings.HasPrefix(rel, dir) {
				if extra == 0 {
					first = f
				}
				extra++
			}
		}
	}
	if extra > 0 {
		errs = append(errs, fmt.Errorf("the initramfs has %d network or filesystem modules, the first %s", extra, first))
	}
	for _, m := range InitrdModules {
		if !have[m] {
			errs = append(errs, fmt.Errorf("the initramfs lacks the disk driver %s", m))
		}
	}
	return errors.Join(errs...)
}

package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"ztwizard/steps/testenv"
)

const testKernel = "6.1.0-56-cloud-amd64"

// slimTree writes a root that passes CheckSlim: copyright files only,
// locale.alias, en_US's sources, the kept hwdb entries, compressed modules
// that modules.dep lists, and the programs a node runs.
func slimTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	for _, f := range []string{
		"usr/share/doc/nginx/copyright", "usr/share/locale/locale.alias", "usr/share/info/dir",
		"usr/share/i18n/locales/en_US", "usr/share/i18n/locales/en_GB", "usr/share/i18n/locales/i18n_ctype",
		"usr/share/i18n/locales/translit_combining", "usr/share/i18n/charmaps/UTF-8.gz",
		"usr/lib/udev/hwdb.d/20-net-ifname.hwdb", "usr/lib/udev/hwdb.d/60-keyboard.hwdb",
		"boot/config-" + testKernel,
		"usr/sbin/nginx", "usr/sbin/sshd", "usr/sbin/nft", "usr/bin/wg", "usr/lib/systemd/systemd", "usr/bin/xz",
	} {
		writeFile(t, filepath.Join(tree, f), "x", 0o644)
	}
	if err := os.Symlink("libkmod2", filepath.Join(tree, "usr/share/doc/kmod")); err != nil {
		t.Fatal(err)
	}
	var dep strings.Builder
	for _, m := range NodeModules {
		p := "kernel/drivers/" + strings.ReplaceAll(m, "_", "-") + ".ko.xz"
		writeFile(t, filepath.Join(tree, "usr/lib/modules", testKernel, p), "xz", 0o644)
		fmt.Fprintf(&dep, "%s:\n", p)
	}
	writeFile(t, filepath.Join(tree, "usr/lib/modules", testKernel, "modules.dep"), dep.String(), 0o644)
	return tree
}

func TestCheckSlim(t *testing.T) {
	if err := CheckSlim(slimTree(t)); err != nil {
		t.Fatalf("a slim tree: %v", err)
	}
	mod := filepath.Join("usr/lib/modules", testKernel)
	for _, tt := range []struct {
		name   string
		change func(tree string)
		want   string
	}{
		{"documentation", func(tree string) { writeFile(t, filepath.Join(tree, "usr/share/doc/nginx/changelog.gz"), "x", 0o644) }, "documentation beyond copyright files: 1 files, the first /usr/share/doc/nginx/changelog.gz"},
		{"a manual page", func(tree string) { writeFile(t, filepath.Join(tree, "usr/share/man/man8/nft.8.gz"), "x", 0o644) }, "manual pages: 1 files"},
		{"a translation", func(tree string) {
			writeFile(t, filepath.Join(tree, "usr/share/locale/de/LC_MESSAGES/tar.mo"), "x", 0o644)
		}, "translations: 1 files, the first /usr/share/locale/de/LC_MESSAGES/tar.mo"},
		{"another locale's sources", func(tree string) { writeFile(t, filepath.Join(tree, "usr/share/i18n/locales/de_DE"), "x", 0o644) }, "locale sources besides C and en_US"},
		{"Perl's modules", func(tree string) { writeFile(t, filepath.Join(tree, "usr/share/perl/5.36.0/strict.pm"), "x", 0o644) }, "Perl's modules: 1 files"},
		{"vendor names", func(tree string) {
			writeFile(t, filepath.Join(tree, "usr/lib/udev/hwdb.d/20-pci-vendor-model.hwdb"), "x", 0o644)
		}, "hardware vendor and model names"},
		{"a kernel in /boot", func(tree string) { writeFile(t, filepath.Join(tree, "boot/vmlinuz-"+testKernel), "x", 0o644) }, "a kernel or initramfs in /boot"},
		{"an uncompressed module", func(tree string) { writeFile(t, filepath.Join(tree, mod, "kernel/fs/xfs.ko"), "x", 0o644) }, "uncompressed kernel modules: 1 files"},
		{"no WireGuard module", func(tree string) { os.Remove(filepath.Join(tree, mod, "kernel/drivers/wireguard.ko.xz")) }, "module wireguard: stat"},
		{"nf_tables not in the index", func(tree string) {
			dep := filepath.Join(tree, mod, "modules.dep")
			data, _ := os.ReadFile(dep)
			os.WriteFile(dep, bytes.ReplaceAll(data, []byte("kernel/drivers/nf-tables.ko.xz:\n"), nil), 0o644)
		}, "no module nf_tables in modules.dep"},
		{"no virtio_blk", func(tree string) {
			dep := filepath.Join(tree, mod, "modules.dep")
			data, _ := os.ReadFile(dep)
			os.WriteFile(dep, bytes.ReplaceAll(data, []byte("kernel/drivers/virtio-blk.ko.xz:\n"), nil), 0o644)
		}, "no module virtio_blk"},
		{"no module index", func(tree string) { os.Remove(filepath.Join(tree, mod, "modules.dep")) }, "no kernel module index"},
		{"no sshd", func(tree string) { os.Remove(filepath.Join(tree, "usr/sbin/sshd")) }, "a node needs /usr/sbin/sshd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tree := slimTree(t)
			tt.change(tree)
			err := CheckSlim(tree)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// newc writes a newc cpio archive of the named empty files.
func newc(names ...string) []byte {
	var b bytes.Buffer
	for i, n := range append(names, "TRAILER!!!") {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", i+1, 0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(n)+1, 0)
		b.WriteString(n + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	return b.Bytes()
}

func TestCpioFiles(t *testing.T) {
	testenv.Need(t, "xz")
	early := newc("kernel/x86/microcode/GenuineIntel.bin")
	main := newc("usr", "usr/lib/modules/"+testKernel+"/kernel/drivers/block/virtio_blk.ko", "init")
	var gz bytes.Buffer
	z := gzip.NewWriter(&gz)
	z.Write(main)
	z.Close()
	cmd := exec.Command("xz", "--check=crc32", "-c")
	cmd.Stdin = bytes.NewReader(main)
	xz, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/x86/microcode/GenuineIntel.bin", "usr", "usr/lib/modules/" + testKernel + "/kernel/drivers/block/virtio_blk.ko", "init"}
	for name, compressed := range map[string][]byte{"gzip": gz.Bytes(), "xz": xz} {
		// An uncompressed early archive, padding, then the compressed one,
		// as initramfs-tools writes them.
		data := append(append(slices.Clone(early), make([]byte, 12)...), compressed...)
		got, err := cpioFiles(t.Context(), data)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := cpioFiles(t.Context(), []byte("070701zz")); err == nil {
		t.Error("a broken header was read")
	}
	if _, err := cpioFiles(t.Context(), []byte("PK\x03\x04")); err == nil || !strings.Contains(err.Error(), "unknown format") {
		t.Errorf("a zip file: %v", err)
	}
}

func TestCheckInitrd(t *testing.T) {
	k := "usr/lib/modules/" + testKernel + "/kernel/"
	var files []string
	for _, m := range InitrdModules {
		files = append(files, k+"drivers/x/"+strings.ReplaceAll(m, "_", "-")+".ko")
	}
	if err := CheckInitrd(files); err != nil {
		t.Fatalf("the disk drivers: %v", err)
	}
	err := CheckInitrd(append(slices.Clone(files), k+"drivers/net/virtio_net.ko", k+"fs/xfs/xfs.ko"))
	if err == nil || !strings.Contains(err.Error(), "the initramfs has 2 network or filesystem modules, the first "+k+"drivers/net/virtio_net.ko") {
		t.Errorf("network and filesystem modules: %v", err)
	}
	err = CheckInitrd(files[1:])
	if err == nil || !strings.Contains(err.Error(), "lacks the disk driver virtio_pci") {
		t.Errorf("no virtio_pci: %v", err)
	}
}

func TestSlimArgs(t *testing.T) {
	args := mmdebstrapSlimArgs()
	for _, want := range []string{"--hook-dir=" + mergedUsrHook, "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright"} {
		if !slices.Contains(args, want) {
			t.Errorf("mmdebstrap's options lack %q", want)
		}
	}
	// Filters are in dpkg's order: every include after the exclude it
	// takes back from.
	for i, f := range DpkgFilters {
		if p, ok := strings.CutPrefix(f, "path-include="); ok {
			dir := filepath.Dir(p)
			if !slices.ContainsFunc(DpkgFilters[:i], func(e string) bool { return strings.HasPrefix(e, "path-exclude="+dir) }) {
				t.Errorf("%s comes before an exclude of %s", f, dir)
			}
		}
	}
	if !slices.Contains(BasePackages, "xz-utils") {
		t.Error("the modules are xz-compressed and the base packages lack xz-utils")
	}
}

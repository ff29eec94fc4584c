package image

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ztwizard/steps"
	"ztwizard/steps/host"
	"ztwizard/templates"
)

// Paths configure writes.
const (
	FstabPath         = "/etc/fstab"                                                      // the root by label, grown at boot
	RepartPath        = "/etc/repart.d/50-ztwizard-root.conf"                             // systemd-repart grows the root partition
	CloudConfigPath   = "/etc/cloud/cloud.cfg.d/90-ztwizard.cfg"                          // cloud-init keeps its hands off network and host keys
	FirstBootDropIn   = steps.SystemdDir + "/" + steps.FirstBootUnit + ".d/50-image.conf" // the first boot runs before the network
	SelfCheckUnitPath = steps.SystemdDir + "/" + SelfCheckUnit                            // the self-check unit
)

// perMachine are files a Debian root gets at install time that must differ
// between machines (or never be shared): they are removed, and made on
// each machine's first boot.
var perMachine = []string{
	"/var/lib/dbus/machine-id",
	"/var/lib/systemd/random-seed",
	"/var/lib/systemd/credential.secret",
	FirstBootDone,
}

// configure turns the unpacked root into the image: per-machine files
// out (SSH host keys, machine-id emptied), the image's own files (fstab,
// root growth, networking, the first-boot and self-check units), the
// content's files through the same applier as `apply --root`, the ztwizard
// binary, the overlay, units enabled, and every time stamp clamped to
// epoch. It returns the units to enable that the root does not have.
func configure(tree string, spec Spec, epoch int64) ([]string, error) {
	if err := scrub(tree); err != nil {
		return nil, err
	}
	own, err := imageFiles(tree, spec.Content.Plain)
	if err != nil {
		return nil, err
	}
	files := append(own, spec.Content.Files...)
	if _, err := host.WriteFiles(tree, files); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if err := chownInRoot(tree, files); err != nil {
		return nil, err
	}
	if err := installBinary(spec.Binary, filepath.Join(tree, steps.BinaryPath)); err != nil {
		return nil, err
	}
	var overlayUnits []string
	if spec.Overlay != "" {
		if overlayUnits, err = copyOverlay(spec.Overlay, tree); err != nil {
			return nil, err
		}
	}
	if err := MaskUnit(tree, "systemd-firstboot.service"); err != nil {
		return nil, err
	}
	enable := []string{"systemd-networkd.service", steps.FirstBootUnit, SelfCheckUnit}
	if spec.Content.Plain {
		enable = []string{"systemd-networkd.service"}
	}
	enable = append(enable, spec.Content.Enable...)
	enable = append(enable, overlayUnits...)
	skipped, err := EnableUnits(tree, enable)
	if err != nil {
		return nil, err
	}
	if spec.Golden {
		found, err := ScanTree(tree)
		if err != nil {
			return nil, err
		}
		if len(found) > 0 {
			return nil, fmt.Errorf("image: a golden image may hold no private key, found: %s", strings.Join(found, ", "))
		}
	}
	return skipped, clampTimes(tree, epoch)
}

// scrub removes what must not be shared between machines.
func scrub(tree string) error {
	keys, _ := filepath.Glob(filepath.Join(tree, "etc/ssh/ssh_host_*"))
	for _, p := range perMachine {
		keys = append(keys, filepath.Join(tree, p))
	}
	for _, k := range keys {
		if err := os.Remove(k); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("image: scrub: %w", err)
		}
	}
	// Empty, not missing: systemd makes a new one on the first boot and
	// treats that boot as the first (ConditionFirstBoot).
	if err := os.WriteFile(filepath.Join(tree, "etc/machine-id"), nil, 0o444); err != nil {
		return fmt.Errorf("image: machine-id: %w", err)
	}
	if err := os.Truncate(filepath.Join(tree, "etc/machine-id"), 0); err != nil {
		return fmt.Errorf("image: machine-id: %w", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "lib/systemd/systemd-resolved")); err == nil {
		resolv := filepath.Join(tree, "etc/resolv.conf")
		os.Remove(resolv)
		if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", resolv); err != nil {
			return fmt.Errorf("image: resolv.conf: %w", err)
		}
	}
	return nil
}

// imageFiles are the files every image has besides its content's.
func imageFiles(tree string, plain bool) ([]steps.File, error) {
	type spec struct {
		path, tmpl string
		data       any
	}
	unit := struct{ Binary, Site, FirstBoot, Iface string }{steps.BinaryPath, steps.SiteFilePath, steps.FirstBootUnit, steps.WireGuardName}
	want := []spec{
		{FstabPath, "image-fstab.tmpl", struct{ RootLabel string }{RootLabel}},
		{RepartPath, "image-repart.tmpl", nil},
		{DHCPNetworkPath, "image-network-dhcp.tmpl", nil},
	}
	if !plain {
		want = append(want, spec{FirstBootDropIn, "image-firstboot.tmpl", unit}, spec{SelfCheckUnitPath, "image-selfcheck.tmpl", unit})
	}
	if fi, err := os.Stat(filepath.Join(tree, "etc/cloud")); err == nil && fi.IsDir() {
		want = append(want, spec{CloudConfigPath, "image-cloud.tmpl", nil})
	}
	var out []steps.File
	for _, w := range want {
		data, err := templates.Render(w.tmpl, w.data)
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		out = append(out, steps.File{Path: w.path, Mode: 0o644, Content: data})
	}
	return out, nil
}

// installBinary copies the ztwizard binary into the root, 0755.
func installBinary(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("image: binary: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("image: binary: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("image: binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("image: binary: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("image: binary: %w", err)
	}
	// Without its symbol table and debug information (as go build
	// -ldflags='-s -w' leaves it) the binary is a third smaller; stack
	// traces still name functions.
	if b, err := exec.Command("objcopy", "--strip-all", dst).CombinedOutput(); err != nil {
		return fmt.Errorf("image: binary: objcopy --strip-all: %w\n%s", err, b)
	}
	return os.Chmod(dst, 0o755)
}

// chownInRoot gives files with an owner or group the ids the root's own
// passwd and group files name (the build host's may differ); accounts the
// root does not have become root's.
func chownInRoot(root string, files []steps.File) error {
	var users, groups map[string]int
	for _, f := range files {
		if f.Owner == "" && f.Group == "" {
			continue
		}
		if users == nil {
			users = readIDs(filepath.Join(root, "etc/passwd"))
			groups = readIDs(filepath.Join(root, "etc/group"))
		}
		uid, gid := users[f.Owner], groups[f.Group]
		if err := os.Lchown(filepath.Join(root, f.Path), uid, gid); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	return nil
}

// readIDs maps names to ids in a passwd or group file.
func readIDs(file string) map[string]int {
	out := map[string]int{}
	data, err := os.ReadFile(file)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 {
			continue
		}
		if id, err := strconv.Atoi(f[2]); err == nil {
			out[f[0]] = id
		}
	}
	return out
}

// copyOverlay copies a folder over the root, root-owned with the overlay's
// modes, symlinks kept. It returns the units with an [Install] section it
// put in etc/systemd/system.
func copyOverlay(src, root string) ([]string, error) {
	var units []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		dst := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		mode := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch {
		case fi.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			return os.Chmod(dst, mode)
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(dst)
			return os.Symlink(target, dst)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			os.Remove(dst)
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				return err
			}
			if err := os.Lchown(dst, 0, 0); err != nil {
				return err
			}
			if err := os.Chmod(dst, mode); err != nil {
				return err
			}
			if path.Dir(filepath.ToSlash(rel)) == "etc/systemd/system" && len(parseInstall(data).wantedBy)+len(parseInstall(data).requiredBy) > 0 {
				units = append(units, filepath.Base(rel))
			}
			return nil
		default:
			return fmt.Errorf("%s: not a file, folder or symlink", p)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("image: overlay: %w", err)
	}
	return units, nil
}

// clampTimes sets every modification time in the tree later than epoch to
// epoch (symlinks themselves, not their targets).
func clampTimes(tree string, epoch int64) error {
	ts := unix.NsecToTimespec(epoch * 1e9)
	return filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().Unix() <= epoch && fi.ModTime().Nanosecond() == 0 {
			return nil
		}
		mt := ts
		if fi.ModTime().Unix() < epoch {
			mt = unix.NsecToTimespec(fi.ModTime().Unix() * 1e9)
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{mt, mt}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("image: time stamps: %s: %w", p, err)
		}
		return nil
	})
}

package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultSuite is the Debian suite images are built from.
const DefaultSuite = "bookworm"

// BasePackages go into every image's root filesystem: a cloud kernel with
// its initramfs (and xz, which packs both the modules and the initramfs),
// systemd with networkd, resolved and timesyncd, nftables, WireGuard's
// tools, nginx and OpenSSH.
var BasePackages = []string{
	"linux-image-cloud-amd64", "initramfs-tools", "xz-utils", "systemd", "systemd-sysv", "udev", "dbus",
	"systemd-resolved", "systemd-timesyncd", "iproute2", "netbase", "e2fsprogs",
	"nftables", "wireguard-tools", "nginx", "openssh-server",
}

// CloudInitPackages are added for golden images.
var CloudInitPackages = []string{"cloud-init"}

// RootfsSpec names a root filesystem: its suite, apt sources and packages.
type RootfsSpec struct {
	Suite    string    // Debian suite; DefaultSuite when empty
	Sources  []string  // apt lines, from AptSources
	Packages []string  // installed without recommends, on top of minbase
	Cache    string    // the cache folder
	Log      io.Writer // mmdebstrap's output; nil discards it
}

// RootfsInfo describes a cached root filesystem.
type RootfsInfo struct {
	Key      string    `json:"key"`      // the cache key: suite, sources and packages hashed
	Suite    string    `json:"suite"`    // the Debian suite
	Sources  []string  `json:"sources"`  // the apt lines it was built from
	Packages []string  `json:"packages"` // sorted, without duplicates
	Epoch    int64     `json:"epoch"`    // SOURCE_DATE_EPOCH it was built with
	Built    time.Time `json:"built"`    // when it was built
	Seconds  float64   `json:"seconds"`  // how long mmdebstrap took
	Tar      string    `json:"-"`        // the tarball's path
	Hit      bool      `json:"-"`        // found in the cache
}

// normalize fills defaults and sorts the package list.
func (s RootfsSpec) normalize() RootfsSpec {
	if s.Suite == "" {
		s.Suite = DefaultSuite
	}
	pk := slices.Clone(s.Packages)
	slices.Sort(pk)
	s.Packages = slices.Compact(pk)
	return s
}

// Key is the cache key of the root filesystem s names.
func (s RootfsSpec) Key() string {
	s = s.normalize()
	h := sha256.New()
	fmt.Fprintf(h, "ztwizard-rootfs v2\nsuite %s\narch amd64\nvariant minbase\n", s.Suite)
	for _, a := range mmdebstrapSlimArgs() {
		fmt.Fprintf(h, "option %q\n", a)
	}
	for _, l := range s.Sources {
		fmt.Fprintf(h, "source %s\n", l)
	}
	for _, p := range s.Packages {
		fmt.Fprintf(h, "package %s\n", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// DefaultCache is where root filesystems are cached: /var/cache/ztwizard
// as root, else $XDG_CACHE_HOME/ztwizard (~/.cache/ztwizard).
func DefaultCache() string {
	if os.Geteuid() == 0 {
		return "/var/cache/ztwizard"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "ztwizard")
	}
	return filepath.Join(os.TempDir(), "ztwizard-cache")
}

// Rootfs returns the cached root filesystem s names, building it with
// mmdebstrap when it is missing. Concurrent callers wait for one build.
func Rootfs(ctx context.Context, s RootfsSpec) (*RootfsInfo, error) {
	s = s.normalize()
	if s.Cache == "" {
		return nil, errors.New("image: rootfs: no cache folder")
	}
	if len(s.Sources) == 0 {
		return nil, errors.New("image: rootfs: no apt sources")
	}
	if err := os.MkdirAll(s.Cache, 0o755); err != nil {
		return nil, fmt.Errorf("image: rootfs cache: %w", err)
	}
	key := s.Key()
	base := filepath.Join(s.Cache, "rootfs-"+s.Suite+"-"+key)
	unlock, err := lockFile(ctx, base+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if info, err := readRootfsInfo(base); err == nil {
		info.Hit = true
		return info, nil
	}
	return buildRootfs(ctx, s, key, base)
}

func readRootfsInfo(base string) (*RootfsInfo, error) {
	data, err := os.ReadFile(base + ".json")
	if err != nil {
		return nil, err
	}
	var info RootfsInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, err
	}
	if _, err := os.Stat(base + ".tar"); err != nil {
		return nil, err
	}
	info.Tar = base + ".tar"
	return &info, nil
}

// buildRootfs runs mmdebstrap into base.tar and records base.json.
func buildRootfs(ctx context.Context, s RootfsSpec, key, base string) (*RootfsInfo, error) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, errors.New("image: rootfs: mmdebstrap is not installed (apt-get install mmdebstrap)")
	}
	start := time.Now()
	epoch := start.Unix()
	tmp := base + ".tar.part"
	if _, err := os.Stat(mergedUsrHook); err != nil {
		return nil, fmt.Errorf("image: rootfs: mmdebstrap's merged-/usr hook is missing (mmdebstrap 1.0 or later has it): %w", err)
	}
	args := []string{
		"--mode=unshare", "--variant=minbase", "--format=tar", "--architectures=amd64",
		`--aptopt=APT::Install-Recommends "false"`,
	}
	args = append(args, mmdebstrapSlimArgs()...)
	args = append(args, "--include="+strings.Join(s.Packages, ","), s.Suite, tmp)
	args = append(args, s.Sources...)
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10), "LC_ALL=C.UTF-8")
	var tail tailBuffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&tail, orDiscard(s.Log)), io.MultiWriter(&tail, orDiscard(s.Log))
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("image: rootfs: mmdebstrap %s: %w\n%s", s.Suite, err, tail.String())
	}
	info := &RootfsInfo{Key: key, Suite: s.Suite, Sources: s.Sources, Packages: s.Packages, Epoch: epoch,
		Built: start.UTC(), Seconds: time.Since(start).Seconds()}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("image: rootfs: %w", err)
	}
	if err := os.Rename(tmp, base+".tar"); err != nil {
		return nil, fmt.Errorf("image: rootfs: %w", err)
	}
	if err := os.WriteFile(base+".json", append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("image: rootfs: %w", err)
	}
	info.Tar = base + ".tar"
	return info, nil
}

// lockFile takes an exclusive flock on path, waiting until ctx is done.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("image: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("image: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("image: lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// extract unpacks a rootfs tarball into dir, keeping owners, modes,
// devices, hard links and extended attributes.
func extract(ctx context.Context, tarball, dir string) error {
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"-xpf", tarball, "-C", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("image: extract %s: %w\n%s", tarball, err, out)
	}
	return nil
}

// tailBuffer keeps the last 4 KiB written to it, for error messages.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

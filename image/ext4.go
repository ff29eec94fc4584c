package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// RootLabel is the root filesystem's label; the kernel command line and
// fstab find the root by it.
const RootLabel = "root"

// ext4Spec is one root filesystem to make.
type ext4Spec struct {
	tree     string // the folder it holds
	out      string // the image file
	size     int64  // bytes, a multiple of 4096
	uuid     string // filesystem UUID
	hashSeed string // directory hash seed (a UUID)
	epoch    int64  // every time stamp mke2fs makes
}

// makeExt4 makes an ext4 image of tree with mkfs.ext4 -d, which keeps hard
// links, owners, modes and extended attributes. mkfs.ext4 copies each
// inode's ctime and atime from the tree, where they are the moment of
// extraction: they are set to the epoch afterwards with debugfs, so the
// same tree makes the same bytes.
func makeExt4(ctx context.Context, s ext4Spec) error {
	for _, tool := range []string{"mkfs.ext4", "dumpe2fs", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("image: ext4: %s is not installed (apt-get install e2fsprogs)", tool)
		}
	}
	if err := os.WriteFile(s.out, nil, 0o600); err != nil {
		return fmt.Errorf("image: ext4: %w", err)
	}
	if err := os.Truncate(s.out, s.size); err != nil {
		return fmt.Errorf("image: ext4: %w", err)
	}
	env := append(os.Environ(), "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(s.epoch, 10))
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", RootLabel, "-U", s.uuid,
		"-E", "hash_seed="+s.hashSeed+",root_owner=0:0,nodiscard,lazy_itable_init=0",
		"-d", s.tree, s.out)
	mkfs.Env = env
	if out, err := mkfs.CombinedOutput(); err != nil {
		return fmt.Errorf("image: mkfs.ext4: %w\n%s", err, out)
	}
	inodes, err := usedInodes(ctx, s.out)
	if err != nil {
		return err
	}
	var script bytes.Buffer
	for _, ino := range inodes {
		fmt.Fprintf(&script, "sif <%d> ctime @%d\nsif <%d> atime @%d\n", ino, s.epoch, ino, s.epoch)
	}
	cmdFile := s.out + ".debugfs"
	if err := os.WriteFile(cmdFile, script.Bytes(), 0o600); err != nil {
		return fmt.Errorf("image: ext4: %w", err)
	}
	defer os.Remove(cmdFile)
	dbg := exec.CommandContext(ctx, "debugfs", "-w", "-f", cmdFile, s.out)
	dbg.Env = env
	out, err := dbg.CombinedOutput()
	if err != nil {
		return fmt.Errorf("image: debugfs: %w\n%s", err, tail(out))
	}
	if i := bytes.Index(out, []byte("sif: ")); i >= 0 {
		return fmt.Errorf("image: debugfs: %s", firstLine(out[i:]))
	}
	return nil
}

var (
	reInodesPerGroup = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^Inodes per group:\s+(\d+)$`) })
	reGroup          = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^Group (\d+):`) })
	reFreeInodes     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^\s+Free inodes: ?(.*)$`) })
)

// usedInodes lists the inodes in use in an ext4 image, from dumpe2fs's
// free-inode ranges per group.
func usedInodes(ctx context.Context, img string) ([]int, error) {
	out, err := exec.CommandContext(ctx, "dumpe2fs", img).Output()
	if err != nil {
		return nil, fmt.Errorf("image: dumpe2fs %s: %w", img, err)
	}
	return parseUsedInodes(out)
}

func parseUsedInodes(out []byte) ([]int, error) {
	m := reInodesPerGroup().FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("image: dumpe2fs: no inodes per group")
	}
	ipg, _ := strconv.Atoi(string(m[1]))
	var used []int
	group := -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		if g := reGroup().FindSubmatch(line); g != nil {
			group, _ = strconv.Atoi(string(g[1]))
			continue
		}
		f := reFreeInodes().FindSubmatch(line)
		if f == nil || group < 0 {
			continue
		}
		free := map[int]bool{}
		for _, r := range strings.Split(string(f[1]), ",") {
			r = strings.TrimSpace(r)
			if r == "" {
				continue
			}
			a, b, ok := strings.Cut(r, "-")
			if !ok {
				b = a
			}
			lo, err1 := strconv.Atoi(a)
			hi, err2 := strconv.Atoi(b)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("image: dumpe2fs: bad range %q", r)
			}
			for i := lo; i <= hi; i++ {
				free[i] = true
			}
		}
		for i := group*ipg + 1; i <= (group+1)*ipg; i++ {
			if !free[i] {
				used = append(used, i)
			}
		}
		group = -1
	}
	return used, nil
}

// treeSize is the bytes the files under dir take on disk.
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		total += (fi.Size() + 4095) / 4096 * 4096
		return nil
	})
	return total, err
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

func tail(b []byte) string {
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}

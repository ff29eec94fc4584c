package image

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// unitDirs are where systemd looks for unit files, most specific first.
var unitDirs = []string{"/etc/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}

// EnableUnits enables units in the tree at root as `systemctl enable` does,
// without running systemd: a symlink in TARGET.wants (or .requires) for
// each WantedBy= (RequiredBy=) of the unit's [Install] section, one per
// Alias=, and the units named by Also= enabled too. An instance of a
// template (wg-quick@zt0.service) links to its template. Units that are not
// in the tree are returned, not enabled.
func EnableUnits(root string, names []string) (missing []string, err error) {
	seen := map[string]bool{}
	var enable func(name string) error
	enable = func(name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		file, instance, template := name, "", false
		if at := strings.Index(name, "@"); at >= 0 {
			ext := path.Ext(name)
			file, instance, template = name[:at+1]+ext, strings.TrimSuffix(name[at+1:], ext), true
		}
		where, content, err := findUnit(root, file)
		if err != nil {
			return err
		}
		if where == "" {
			missing = append(missing, name)
			return nil
		}
		inst := parseInstall(content)
		if template && instance == "" {
			if inst.defaultInstance == "" {
				return fmt.Errorf("image: enable %s: a template needs an instance (%s)", name, strings.Replace(file, "@.", "@NAME.", 1))
			}
			name = strings.Replace(file, "@.", "@"+inst.defaultInstance+".", 1)
		}
		for _, t := range inst.wantedBy {
			if err := link(root, path.Join(unitDirs[0], t+".wants", name), where); err != nil {
				return err
			}
		}
		for _, t := range inst.requiredBy {
			if err := link(root, path.Join(unitDirs[0], t+".requires", name), where); err != nil {
				return err
			}
		}
		for _, a := range inst.alias {
			if err := link(root, path.Join(unitDirs[0], a), where); err != nil {
				return err
			}
		}
		for _, also := range inst.also {
			if err := enable(also); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := enable(n); err != nil {
			return missing, err
		}
	}
	return missing, nil
}

// MaskUnit masks a unit in the tree at root (a symlink to /dev/null).
func MaskUnit(root, name string) error {
	return link(root, path.Join(unitDirs[0], name), "/dev/null")
}

// findUnit returns where a unit file is on the node and its content, or
// "" when the tree has none. Symlinks resolve inside root.
func findUnit(root, name string) (string, []byte, error) {
	for _, dir := range unitDirs {
		p := path.Join(dir, name)
		real, err := resolveIn(root, p)
		if err != nil {
			continue
		}
		if real == "/dev/null" {
			return "", nil, fmt.Errorf("image: enable %s: the unit is masked", name)
		}
		data, err := os.ReadFile(filepath.Join(root, real))
		if err != nil {
			continue
		}
		return real, data, nil
	}
	return "", nil, nil
}

// resolveIn follows the symlinks of p's last component inside root, as a
// chroot would; absolute targets are taken from root.
func resolveIn(root, p string) (string, error) {
	for range 16 {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			return p, nil
		}
		target, err := os.Readlink(filepath.Join(root, p))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		if target == "/dev/null" {
			return target, nil
		}
		p = path.Clean(target)
	}
	return "", fmt.Errorf("image: %s: too many symlinks", p)
}

// link makes the symlink at (node path) at pointing to target, replacing
// what was there.
func link(root, at, target string) error {
	dst := filepath.Join(root, at)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if cur, err := os.Readlink(dst); err == nil && cur == target {
		return nil
	}
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("image: %w", err)
	}
	if err := os.Symlink(target, dst); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// installSection is a unit's [Install] section.
type installSection struct {
	wantedBy, requiredBy, alias, also []string
	defaultInstance                   string
}

func parseInstall(data []byte) installSection {
	var in installSection
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			section = line
			continue
		}
		if section != "[Install]" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals := strings.Fields(v)
		switch strings.TrimSpace(k) {
		case "WantedBy":
			in.wantedBy = append(in.wantedBy, vals...)
		case "RequiredBy":
			in.requiredBy = append(in.requiredBy, vals...)
		case "Alias":
			in.alias = append(in.alias, vals...)
		case "Also":
			in.also = append(in.also, vals...)
		case "DefaultInstance":
			in.defaultInstance = strings.TrimSpace(v)
		}
	}
	return in
}

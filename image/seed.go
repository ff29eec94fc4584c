package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"ztwizard/steps"
	"ztwizard/templates"
)

// Seed layout: the NoCloud files cloud-init reads, and ztwizard's own.
const (
	// SeedLabel is the ISO9660 volume label NoCloud looks for.
	SeedLabel = "cidata"
	// SeedDataPath is where a seed keeps what it adds to the node's bundle:
	// host name, network files, units.
	SeedDataPath = "ztwizard/seed.json"
	// SeedBundlePath is where a seed keeps the node's bundle (see
	// ztwizard/steps/bundle), the same file `ztwizard bundle` writes.
	SeedBundlePath = "ztwizard/bundle.ztb"
	seedVersion    = 2
)

// ErrNotOurSeed is ReadSeed's error for a NoCloud seed without
// ztwizard's files (one made for cloud-init alone, as from user-data).
var ErrNotOurSeed = errors.New("not a ztwizard seed")

// seedData is SeedDataPath's JSON.
type seedData struct {
	Version  int        `json:"version"`
	Site     string     `json:"site"`
	Node     string     `json:"node"`
	Hostname string     `json:"hostname"`
	Files    []seedFile `json:"files"`
	Enable   []string   `json:"enable"`
}

type seedFile struct {
	Path    string `json:"path"`
	Mode    uint32 `json:"mode"`
	Owner   string `json:"owner,omitempty"`
	Group   string `json:"group,omitempty"`
	Content []byte `json:"content"`
}

// SeedContent is a seed's content for node: its signed bundle, which
// carries the node's plan and keys, plus what the image adds (the node's
// name, host name and network files, the WireGuard unit).
func SeedContent(site, node string, net Network, bundle []byte) (*Content, error) {
	c := &Content{Site: site, Node: node, Hostname: node, Bundle: bundle, Enable: []string{WireGuardUnit}}
	c.Files = append(c.Files, steps.File{Path: NodeFilePath, Mode: 0o644, Content: []byte(node + "\n")})
	hf, err := HostFiles(c.Hostname)
	if err != nil {
		return nil, err
	}
	nf, err := NetworkFiles(net)
	if err != nil {
		return nil, err
	}
	c.Files = append(append(c.Files, hf...), nf...)
	return c, c.sort()
}

// WriteSeed writes a cloud-init NoCloud seed for c to out, an ISO9660
// image labelled cidata made with go-diskfs, mode 0600 (it holds the node's
// private keys): meta-data (instance-id, local-hostname), user-data (a
// #cloud-config naming the host and keeping its SSH host keys) and
// SeedDataPath, the node's files and units, and SeedBundlePath, the node's
// bundle, which ztwizard's first boot applies. work is a private folder for the work.
func WriteSeed(out, work string, c *Content) error {
	if c.Node == "" {
		return errors.New("image: seed: no node")
	}
	data := seedData{Version: seedVersion, Site: c.Site, Node: c.Node, Hostname: c.Hostname, Enable: c.Enable}
	for _, f := range c.Files {
		data.Files = append(data.Files, seedFile{Path: f.Path, Mode: uint32(f.Mode.Perm()), Owner: f.Owner, Group: f.Group, Content: f.Content})
	}
	js, err := json.MarshalIndent(data, "", " ")
	if err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	sum := sha256.Sum256(js)
	view := struct{ Site, Node, Hostname, InstanceID string }{c.Site, c.Node, c.Hostname, fmt.Sprintf("ztwizard-%s-%s-%x", c.Site, c.Node, sum[:6])}
	meta, err := templates.Render("firstboot-meta-data.tmpl", view)
	if err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	user, err := templates.Render("firstboot-user-data.tmpl", view)
	if err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	files := map[string][]byte{"meta-data": meta, "user-data": user, SeedDataPath: js}
	if c.Bundle != nil {
		files[SeedBundlePath] = c.Bundle
	}
	return writeISO(out, work, files)
}

// WriteNoCloud writes a plain cloud-init NoCloud seed to out: an ISO9660
// image labelled cidata holding files by name (meta-data and user-data,
// vendor-data if given), mode 0600. work is a private folder for the work.
func WriteNoCloud(out, work string, files map[string][]byte) error {
	for _, name := range []string{"meta-data", "user-data"} {
		if _, ok := files[name]; !ok {
			return fmt.Errorf("image: NoCloud seed: no %s", name)
		}
	}
	return writeISO(out, work, files)
}

// writeISO writes files into an ISO9660 image labelled SeedLabel, with
// Rock Ridge and Joliet names (NoCloud's names have hyphens).
func writeISO(out, work string, files map[string][]byte) error {
	tmp, err := os.MkdirTemp(work, ".ztwizard-seed-")
	if err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	defer os.RemoveAll(tmp)
	space := filepath.Join(tmp, "space")
	if err := os.Mkdir(space, 0o700); err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	var total int64
	for _, d := range files {
		total += int64(len(d))
	}
	size := (total/2048 + 256) * 2048
	iso := filepath.Join(tmp, "seed.iso")
	b, err := file.CreateFromPath(iso, size)
	if err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	defer b.Close()
	fsys, err := iso9660.Create(b, size, 0, 2048, space)
	if err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	for name, d := range files {
		if dir := filepath.Dir(name); dir != "." {
			if err := fsys.Mkdir("/" + dir); err != nil {
				return fmt.Errorf("image: seed: %w", err)
			}
		}
		f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("image: seed: %s: %w", name, err)
		}
		if _, err := f.Write(d); err != nil {
			return fmt.Errorf("image: seed: %s: %w", name, err)
		}
		f.Close()
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: true, VolumeIdentifier: SeedLabel}); err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	if err := os.Chmod(iso, 0o600); err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	if err := os.Rename(iso, out); err != nil {
		return fmt.Errorf("image: seed: %w", err)
	}
	return nil
}

// ReadSeed reads the content a seed carries, from an ISO file or a block
// device, with go-diskfs (no mount).
func ReadSeed(path string) (*Content, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: seed: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("image: seed %s: %w", path, err)
	}
	fsys, err := iso9660.Read(file.New(f, true), size, 0, 2048)
	if err != nil {
		return nil, fmt.Errorf("image: seed %s: not an ISO9660 image: %w", path, err)
	}
	js, err := fsys.ReadFile(SeedDataPath)
	if err != nil {
		return nil, fmt.Errorf("image: seed %s: no %s (%w): %w", path, SeedDataPath, ErrNotOurSeed, err)
	}
	var data seedData
	if err := json.Unmarshal(js, &data); err != nil {
		return nil, fmt.Errorf("image: seed %s: %s: %w", path, SeedDataPath, err)
	}
	if data.Version != seedVersion {
		return nil, fmt.Errorf("image: seed %s: version %d, this ztwizard reads %d", path, data.Version, seedVersion)
	}
	c := &Content{Site: data.Site, Node: data.Node, Hostname: data.Hostname, Enable: data.Enable}
	if b, err := fsys.ReadFile(SeedBundlePath); err == nil {
		c.Bundle = b
	}
	for _, sf := range data.Files {
		c.Files = append(c.Files, steps.File{Path: sf.Path, Mode: fs.FileMode(sf.Mode).Perm(), Owner: sf.Owner, Group: sf.Group, Content: sf.Content})
	}
	if err := steps.ValidName(c.Node); err != nil {
		return nil, fmt.Errorf("image: seed %s: node: %w", path, err)
	}
	return c, c.sort()
}

// FindSeed looks through the block devices (sysBlock is /sys/class/block,
// dev is /dev) for an ISO9660 volume labelled cidata, as NoCloud does,
// reading each device's volume descriptor directly (no udev, no mount).
// It returns "" when there is none.
func FindSeed(sysBlock, dev string) (string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", fmt.Errorf("image: find seed: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
			continue
		}
		p := filepath.Join(dev, name)
		if label, ok := isoLabel(p); ok && strings.EqualFold(label, SeedLabel) {
			return p, nil
		}
	}
	return "", nil
}

// isoLabel reads an ISO9660 primary volume descriptor's volume identifier.
func isoLabel(p string) (string, bool) {
	f, err := os.Open(p)
	if err != nil {
		return "", false
	}
	defer f.Close()
	var pvd [2048]byte
	if _, err := f.ReadAt(pvd[:], 16*2048); err != nil {
		return "", false
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return "", false
	}
	return string(bytes.TrimRight(pvd[40:72], " \x00")), true
}

package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/bundle"
)

// exampleSeed writes db's seed into dir and returns its path and content.
func exampleSeed(t *testing.T, dir string) (string, *Content) {
	t.Helper()
	a := exampleAuthority(t)
	hk, err := NewHostKey("root@db")
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := a.BundleWithHostKey("db", hk.Private)
	if err != nil {
		t.Fatal(err)
	}
	c, err := SeedContent(a.Site.Site, "db", Network{Address: "192.168.1.100/24"}, data)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "db-seed.iso")
	if err := WriteSeed(out, dir, c); err != nil {
		t.Fatal(err)
	}
	caPEM, err := a.Store.ReadFile(authority.CACertFile)
	if err != nil {
		t.Fatal(err)
	}
	seedCA = caPEM
	return out, c
}

// seedCA is the CA certificate of the last exampleSeed, which the golden
// image a seed goes with carries.
var seedCA []byte

func TestSeedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	out, c := exampleSeed(t, dir)
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("seed mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadSeed(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != "db" || got.Site != c.Site || got.Hostname != "db" || !slices.Equal(got.Enable, c.Enable) || len(got.Files) != len(c.Files) || !bytes.Equal(got.Bundle, c.Bundle) {
		t.Fatalf("read back %+v", got)
	}
	for i, f := range c.Files {
		g := got.Files[i]
		if g.Path != f.Path || g.Mode != f.Mode || !bytes.Equal(g.Content, f.Content) {
			t.Errorf("file %d: %s %v, want %s %v", i, g.Path, g.Mode, f.Path, f.Mode)
		}
	}

	// cloud-init's side: the label, and the NoCloud files by their names.
	if label, ok := isoLabel(out); !ok || label != SeedLabel {
		t.Errorf("label %q", label)
	}
	if _, err := exec.LookPath("blkid"); err == nil {
		b, _ := exec.Command("blkid", "-o", "export", out).Output()
		if !bytes.Contains(b, []byte("LABEL=cidata")) || !bytes.Contains(b, []byte("TYPE=iso9660")) {
			t.Errorf("blkid:\n%s", b)
		}
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := iso9660.Read(file.New(f, true), fi.Size(), 0, 2048)
	if err != nil {
		t.Fatal(err)
	}
	user, err := fsys.ReadFile("user-data")
	if err != nil || !bytes.HasPrefix(user, []byte("#cloud-config\n")) || !bytes.Contains(user, []byte("hostname: db")) ||
		!bytes.Contains(user, []byte("ssh_deletekeys: false")) {
		t.Errorf("user-data (%v):\n%s", err, user)
	}
	meta, err := fsys.ReadFile("meta-data")
	if err != nil || !bytes.Contains(meta, []byte("instance-id: ztwizard-oslo-prod-db-")) || !bytes.Contains(meta, []byte("local-hostname: db")) {
		t.Errorf("meta-data (%v):\n%s", err, meta)
	}
}

func TestFindSeed(t *testing.T) {
	dir := t.TempDir()
	seed, _ := exampleSeed(t, dir)
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	for _, name := range []string{"loop0", "vda", "vda1", "sr0"} {
		writeFile(t, filepath.Join(sys, name, "size"), "0\n", 0o644)
	}
	writeFile(t, filepath.Join(dev, "vda"), strings.Repeat("\x00", 64<<10), 0o600)
	writeFile(t, filepath.Join(dev, "vda1"), "short", 0o600)
	got, err := FindSeed(sys, dev)
	if err != nil || got != "" {
		t.Fatalf("no seed attached: got %q, %v", got, err)
	}
	data, _ := os.ReadFile(seed)
	writeFile(t, filepath.Join(dev, "sr0"), string(data), 0o600)
	writeFile(t, filepath.Join(dev, "loop0"), string(data), 0o600) // loop devices are not looked at
	got, err = FindSeed(sys, dev)
	if err != nil || got != filepath.Join(dev, "sr0") {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReadSeedRefusesOtherISOs(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other.iso")
	if err := writeISO(other, dir, map[string][]byte{"meta-data": []byte("instance-id: x\n"), "user-data": []byte("#cloud-config\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSeed(other); !errors.Is(err, ErrNotOurSeed) || !strings.Contains(err.Error(), "not a ztwizard seed") {
		t.Fatalf("a plain NoCloud seed: %v", err)
	}
	if _, err := ReadSeed(filepath.Join(dir, "missing.iso")); err == nil {
		t.Fatal("a missing seed read fine")
	}
}

// firstbootRoot is a golden image's tree as far as first boot cares.
func firstbootRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n", 0o644)
	writeFile(t, filepath.Join(root, "etc/group"), "root:x:0:\nwww-data:x:33:\n", 0o644)
	writeFile(t, filepath.Join(root, "etc/hostname"), GoldenHostname+"\n", 0o644)
	writeFile(t, filepath.Join(root, "lib/systemd/system/nginx.service"), "[Install]\nWantedBy=multi-user.target\n", 0o644)
	return root
}

func TestFirstBootAppliesSeed(t *testing.T) {
	dir := t.TempDir()
	seed, c := exampleSeed(t, dir)
	root := firstbootRoot(t)
	writeFile(t, filepath.Join(root, steps.CACertPath), string(seedCA), 0o644)
	var log bytes.Buffer
	fb := FirstBoot{Root: root, Site: c.Site, Seed: seed, Log: &log, Now: func() time.Time { return testNow }}
	rep, err := fb.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Node != "db" || rep.HostKey != "" || rep.WireGuard != "" {
		t.Fatalf("report %+v: the seed's bundle brings the host and WireGuard keys", rep)
	}
	// The image's own files, and the plan built from the bundle.
	for _, f := range c.Files {
		got, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil || !bytes.Equal(got, f.Content) {
			t.Errorf("%s not written (%v)", f.Path, err)
		}
		fi, _ := os.Stat(filepath.Join(root, f.Path))
		if fi != nil && fi.Mode().Perm() != f.Mode {
			t.Errorf("%s mode %v, want %v", f.Path, fi.Mode().Perm(), f.Mode)
		}
	}
	for p, mode := range map[string]os.FileMode{steps.NftablesPath: 0o644, steps.WireGuardKeyPath: 0o600, steps.SSHHostKeyPath: 0o600,
		steps.SSHHostCertPath: 0o644, steps.SSHDropInPath: 0o644, "/etc/mysql/mariadb.conf.d/90-ztwizard.cnf": 0o644} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s from the bundle: %v %v", p, fi, err)
		}
	}
	if conf, _ := os.ReadFile(filepath.Join(root, steps.SSHDropInPath)); !bytes.Contains(conf, []byte("HostCertificate")) {
		t.Errorf("sshd drop-in without the host certificate:\n%s", conf)
	}
	if _, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/"+WireGuardUnit)); err != nil {
		t.Errorf("%s not enabled: %v", WireGuardUnit, err)
	}
	if !slices.Contains(rep.Missing, "mariadb.service") {
		t.Errorf("missing units %v", rep.Missing)
	}
	if _, err := os.Stat(filepath.Join(root, FirstBootDone)); err != nil {
		t.Errorf("not marked done: %v", err)
	}
	if held, err := os.ReadFile(filepath.Join(root, steps.DefaultStateDir, "node/bundle.json")); err != nil || !bytes.Contains(held, []byte(`"serial": 1`)) {
		t.Errorf("the node does not hold the seed's bundle (%v):\n%s", err, held)
	}
	if !strings.Contains(log.String(), "applied seed") {
		t.Errorf("log:\n%s", log.String())
	}

	// Refused, and nothing written: a seed of another site, a seed for an
	// image of another CA, a seed whose bundle was changed.
	refuse := func(name string, fb FirstBoot, want string) {
		t.Helper()
		if _, err := fb.Do(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want %q", name, err, want)
		}
		if _, err := os.Stat(filepath.Join(fb.Root, steps.NftablesPath)); err == nil {
			t.Fatalf("%s: a refused seed wrote files", name)
		}
	}
	other := firstbootRoot(t)
	refuse("another site", FirstBoot{Root: other, Site: "elsewhere", Seed: seed}, `for site "oslo-prod"`)
	firstCA := seedCA
	otherCA := firstbootRoot(t)
	_, _ = exampleSeed(t, t.TempDir()) // a second CA
	writeFile(t, filepath.Join(otherCA, steps.CACertPath), string(seedCA), 0o644)
	refuse("another CA", FirstBoot{Root: otherCA, Site: c.Site, Seed: seed, Now: fb.Now}, "signed by another CA")
	bad := *c
	var env bundle.Envelope
	if err := json.Unmarshal(c.Bundle, &env); err != nil {
		t.Fatal(err)
	}
	env.Signature[len(env.Signature)/2] ^= 1
	if bad.Bundle, err = json.Marshal(env); err != nil {
		t.Fatal(err)
	}
	badSeed := filepath.Join(dir, "bad-seed.iso")
	if err := WriteSeed(badSeed, dir, &bad); err != nil {
		t.Fatal(err)
	}
	tampered := firstbootRoot(t)
	writeFile(t, filepath.Join(tampered, steps.CACertPath), string(firstCA), 0o644)
	refuse("a changed bundle", FirstBoot{Root: tampered, Site: c.Site, Seed: badSeed, Now: fb.Now}, "signature does not check")
}

func TestFirstBootWithoutSeed(t *testing.T) {
	root := firstbootRoot(t)
	// A seed made for cloud-init alone is left to it: first boot goes on
	// as without one.
	plain := filepath.Join(t.TempDir(), "plain.iso")
	if err := WriteNoCloud(plain, t.TempDir(), map[string][]byte{"meta-data": []byte("instance-id: x\n"), "user-data": []byte("#cloud-config\n")}); err != nil {
		t.Fatal(err)
	}
	if err := WriteNoCloud(plain, t.TempDir(), map[string][]byte{"user-data": []byte("#cloud-config\n")}); err == nil {
		t.Error("a NoCloud seed without meta-data was written")
	}
	var log bytes.Buffer
	rep, err := FirstBoot{Root: root, Seed: plain, Log: &log}.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "is a NoCloud seed without ztwizard's files: left to cloud-init") {
		t.Errorf("log:\n%s", log.String())
	}
	if rep.Seed != "" || !strings.HasPrefix(rep.HostKey, "SHA256:") || len(rep.WireGuard) != 44 {
		t.Fatalf("report %+v", rep)
	}
	for p, mode := range map[string]os.FileMode{steps.SSHHostKeyPath: 0o600, steps.SSHHostKeyPath + ".pub": 0o644, steps.WireGuardKeyPath: 0o600} {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(root, steps.SSHHostKeyPath+".pub"))
	if !bytes.HasPrefix(pub, []byte("ssh-ed25519 ")) || !bytes.HasSuffix(pub, []byte(" root@"+GoldenHostname+"\n")) {
		t.Errorf("host public key %q", pub)
	}
	found, err := ScanTree(root)
	if err != nil || len(found) != 2 {
		t.Errorf("the keys made are private keys the scan finds: %v %v", found, err)
	}
	// A second run keeps the keys.
	key, _ := os.ReadFile(filepath.Join(root, steps.SSHHostKeyPath))
	rep, err = FirstBoot{Root: root}.Do(context.Background())
	if err != nil || rep.HostKey != "" || rep.WireGuard != "" {
		t.Fatalf("second run: %+v %v", rep, err)
	}
	if again, _ := os.ReadFile(filepath.Join(root, steps.SSHHostKeyPath)); !bytes.Equal(again, key) {
		t.Fatal("the host key changed")
	}
}

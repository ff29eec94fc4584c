package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"

	"ztwizard/image"
	"ztwizard/steps"
	"ztwizard/steps/testenv"
)

// imageEpoch is SOURCE_DATE_EPOCH for the golden bakes.
const imageEpoch = "1700000000"

// imageTestCache is the rootfs cache the image tests share: a build
// reuses it across runs (ZTWIZARD_TEST_CACHE overrides the folder).
func imageTestCache() string {
	if d := os.Getenv("ZTWIZARD_TEST_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "ztwizard-test-cache")
}

// imageTools are what baking and booting need; make test installs them.
var imageTools = []string{"mmdebstrap", "qemu-img", "qemu-system-x86_64", "objcopy", "mkfs.ext4", "debugfs", "e2fsck", "sgdisk", "fsck.vfat"}

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// bakedImages are the images of one test run.
type bakedImages struct {
	dir, state                  string
	db, web, golden, golden2    string
	seed                        string
	dbOut, webOut, goldenOut    string
	seedOut                     string
	dbTook, webTook, goldenTook time.Duration
	golden2Took                 time.Duration
}

// bakeRun runs the ztwizard binary with extra environment, from any
// goroutine.
func bakeRun(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "TZ=UTC", "ZTWIZARD_STATE="), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ztwizard %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// bakeImages bakes db and web (their test overlays and fixed addresses on
// the example's 192.168.1.0/24), the golden image twice with one
// SOURCE_DATE_EPOCH, and db's seed: golden bakes alongside db and web.
func bakeImages(t *testing.T) *bakedImages {
	t.Helper()
	dir, st := workdir(t)
	b := &bakedImages{dir: dir, state: st}
	overlay := func(n string) string {
		p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "image", "overlay-"+n))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cache := imageTestCache()
	common := []string{"--state", st, "--cache", cache}
	// The state folder (CAs, keys) first, so the bakes do not race to make it.
	if _, err := bakeRun(dir, nil, append([]string{"ca", "init"}, common[:2]...)...); err != nil {
		t.Fatal(err)
	}
	timed := func(d *time.Duration, f func() error) error {
		start := time.Now()
		err := f()
		*d = time.Since(start)
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		epoch := []string{"SOURCE_DATE_EPOCH=" + imageEpoch}
		b.golden, b.golden2 = filepath.Join(dir, "golden.qcow2"), filepath.Join(dir, "golden2.qcow2")
		errs[0] = errors.Join(
			timed(&b.goldenTook, func() (err error) {
				b.goldenOut, err = bakeRun(dir, epoch, append([]string{"bake", "--golden", "--out", b.golden}, common...)...)
				return err
			}),
			timed(&b.golden2Took, func() (err error) {
				_, err = bakeRun(dir, epoch, append([]string{"bake", "--golden", "--out", b.golden2}, common...)...)
				return err
			}))
	}()
	go func() {
		defer wg.Done()
		b.db, b.web, b.seed = filepath.Join(dir, "db.qcow2"), filepath.Join(dir, "web.qcow2"), filepath.Join(dir, "db-seed.iso")
		errs[1] = errors.Join(
			timed(&b.dbTook, func() (err error) {
				b.dbOut, err = bakeRun(dir, nil, append([]string{"bake", "--node", "db", "--out", b.db, "--address", "192.168.1.100/24", "--overlay", overlay("db")}, common...)...)
				return err
			}),
			timed(&b.webTook, func() (err error) {
				b.webOut, err = bakeRun(dir, nil, append([]string{"bake", "--node", "web", "--out", b.web, "--address", "192.168.1.50/24", "--overlay", overlay("web"), "--compress"}, common...)...)
				return err
			}),
			func() (err error) {
				b.seedOut, err = bakeRun(dir, nil, "seed", "--state", st, "--node", "db", "--out", b.seed, "--address", "192.168.1.100/24")
				return err
			}())
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("baked db in %v, web (compressed) in %v, golden in %v and again in %v", b.dbTook.Round(time.Second), b.webTook.Round(time.Second),
		b.goldenTook.Round(time.Second), b.golden2Took.Round(time.Second))
	return b
}

// TestImage bakes the example's db and web nodes, a golden image (twice)
// and db's seed once, then checks them offline and boots them under qemu
// (TCG, q35, OVMF): db and web side by side on one socket network, and the
// golden image with db's seed.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("baking and booting images takes minutes; make test runs it")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the image tests bake as root (make test runs as root)")
	}
	for _, tool := range imageTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run scripts/deps.sh", tool)
		}
	}
	for _, f := range []string{ovmfCode, ovmfVars, image.StubPath} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("%v: run scripts/deps.sh", err)
		}
	}
	b := bakeImages(t)

	t.Run("bake reports its stages", func(t *testing.T) {
		for name, out := range map[string]string{"db": b.dbOut, "golden": b.goldenOut} {
			for _, stage := range image.Stages {
				if !regexp.MustCompile(`\[\d/5\] ` + stage + ` done in \d+\.\ds`).MatchString(out) {
					t.Errorf("%s: no %s stage in:\n%s", name, stage, out)
				}
			}
		}
		if !strings.Contains(b.dbOut, "baked node db of site oslo-prod into") || !strings.Contains(b.goldenOut, "baked golden image of site oslo-prod") {
			t.Errorf("outputs:\n%s\n%s", b.dbOut, b.goldenOut)
		}
	})

	t.Run("offline checks", func(t *testing.T) {
		for _, tt := range []struct {
			name, path string
			mode       os.FileMode
		}{{"db", b.db, 0o600}, {"web", b.web, 0o600}, {"golden", b.golden, 0o644}} {
			t.Run(tt.name, func(t *testing.T) {
				fi, err := os.Stat(tt.path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != tt.mode {
					t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.mode)
				}
				checkImageOffline(t, tt.name, tt.path)
			})
		}
		fi, err := os.Stat(b.seed)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("seed: %v %v, want mode 0600", fi, err)
		}
	})

	t.Run("golden bakes are reproducible", func(t *testing.T) {
		if !sameFile(t, b.golden, b.golden2) {
			t.Fatal("two golden bakes from the same cache with the same SOURCE_DATE_EPOCH differ")
		}
	})

	t.Run("firstboot applies the seed to a root folder", func(t *testing.T) {
		root := t.TempDir()
		// A golden image carries the CA certificate the seed's bundle is
		// checked against.
		ca, err := os.ReadFile(filepath.Join(b.state, "ca", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, "etc/ztwizard"), 0o755)
		os.WriteFile(filepath.Join(root, steps.CACertPath), ca, 0o644)
		r := ztw(t, b.dir, "firstboot", "--root", root, "--seed", b.seed)
		if r.code != 0 || !strings.Contains(r.stdout, "applied seed") {
			t.Fatalf("firstboot: %+v", r)
		}
		for _, p := range []string{steps.NftablesPath, steps.SSHHostKeyPath, steps.WireGuardKeyPath, "/etc/wireguard/zt0.conf", image.StaticNetworkPath, image.FirstBootDone} {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("db and web boot side by side", func(t *testing.T) {
		port := strconv.Itoa(testenv.FreePort(t))
		db := bootImage(t, "db", b.db, "-netdev", "socket,id=n0,listen=127.0.0.1:"+port, "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:7a:00:01")
		time.Sleep(2 * time.Second) // db's qemu listens before web's connects
		web := bootImage(t, "web", b.web, "-netdev", "socket,id=n0,connect=127.0.0.1:"+port, "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:7a:00:02")

		t.Run("db self-check", func(t *testing.T) {
			line := db.waitFor(t, regexp.MustCompile(`ZTWIZARD-SELFCHECK .*`), bootTimeout(t))
			want := []string{"ZTWIZARD-SELFCHECK ok node=db ", " firewall=drop,loaded@", "<networkd@", " wireguard=zt0@10.100.0.1:web ",
				" sshd=user-ca,host-cert ", " db=main:mariadb@10.100.0.1:3306 "}
			for _, w := range want {
				if !strings.Contains(line, w) {
					t.Errorf("db's marker lacks %q:\n%s", w, line)
				}
			}
			// The 2 GiB image boots on a 3 GiB disk: the root grew.
			if m := regexp.MustCompile(`root=(\d+)MiB`).FindStringSubmatch(line); m == nil || atoi(m[1]) < 2500 {
				t.Errorf("the root did not grow to the disk: %s", line)
			}
		})
		t.Run("web reaches db's database over the mesh only", func(t *testing.T) {
			line := web.waitFor(t, regexp.MustCompile(`ZTWIZARD-SELFCHECK .*`), bootTimeout(t))
			if !strings.Contains(line, "ZTWIZARD-SELFCHECK ok node=web ") || !strings.Contains(line, "wireguard=zt0@10.100.0.2:db") {
				t.Errorf("web's marker: %s", line)
			}
			probe := web.waitFor(t, regexp.MustCompile(`ZTWIZARD-PROBE .*`), bootTimeout(t))
			for _, w := range []string{"ZTWIZARD-PROBE ok ", "open=10.100.0.1:3306[ztwizard db]", "closed=192.168.1.100:3306[dropped]", "handshake=db"} {
				if !strings.Contains(probe, w) {
					t.Errorf("web's probe lacks %q:\n%s", w, probe)
				}
			}
			db.waitFor(t, regexp.MustCompile(`ZTWIZARD-LISTEN accepted 10\.100\.0\.1:3306 from 10\.100\.0\.2:\d+`), time.Minute)
			if accepted := db.find(regexp.MustCompile(`ZTWIZARD-LISTEN accepted .* from (\S+)`)); len(accepted) != 1 {
				t.Errorf("db accepted %v: want the one probe over the mesh", accepted)
			}
		})
	})

	t.Run("db with no network at all reports within its boot", func(t *testing.T) {
		d := bootImage(t, "db-offline", b.db, "-nic", "none")
		line := d.waitFor(t, regexp.MustCompile(`ZTWIZARD-SELFCHECK .*`), bootTimeout(t))
		for _, w := range []string{"ZTWIZARD-SELFCHECK ok node=db ", " firewall=drop,loaded@", " wireguard=zt0@10.100.0.1:web "} {
			if !strings.Contains(line, w) {
				t.Errorf("db's marker with no network lacks %q:\n%s", w, line)
			}
		}
		// Nothing answers on any network: systemd-networkd-wait-online
		// gives up only after two minutes. The firewall, the mesh and the
		// self-check do not wait for it.
		if waited := d.find(regexp.MustCompile(`Failed to start .*Wait for Network`)); len(waited) > 0 {
			t.Errorf("the self-check came only once the wait for the network was over: %q", waited)
		}
	})

	t.Run("golden with db's seed comes up as db", func(t *testing.T) {
		g := bootImage(t, "golden", b.golden,
			"-device", "virtio-scsi-pci,id=scsi0",
			"-drive", "if=none,id=seed,format=raw,readonly=on,media=cdrom,file="+b.seed,
			"-device", "scsi-cd,drive=seed,bus=scsi0.0",
			"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-pci,netdev=n0")
		line := g.waitFor(t, regexp.MustCompile(`ZTWIZARD-SELFCHECK .*`), bootTimeout(t))
		for _, w := range []string{"ZTWIZARD-SELFCHECK ok node=db ", " wireguard=zt0@10.100.0.1:web ", " sshd=user-ca,host-cert ", " db=main:mariadb@10.100.0.1:3306 "} {
			if !strings.Contains(line, w) {
				t.Errorf("the seeded golden image's marker lacks %q:\n%s", w, line)
			}
		}
		g.waitFor(t, regexp.MustCompile(`ztwizard firstboot: applied seed /dev/sr0: node db of site oslo-prod`), time.Second)
	})

	t.Run("golden takes user-data from a NoCloud seed on its first boot", func(t *testing.T) {
		testCloudInitFirstBoot(t, b)
	})
}

// checkImageOffline checks a baked image without booting it: the GPT
// (sgdisk -v), the ESP (fsck.vfat -n, the UKI at EFI/BOOT/BOOTX64.EFI), the
// root (e2fsck -fn, its label, an empty machine-id, no SSH host key from
// the build), the UKI's initramfs (the disk drivers, no network or
// filesystem modules) and, for the golden image, no private key of any
// kind in any file of the root or in the ESP's bytes, and nothing in the
// root that the slimming leaves out while what a node needs is there.
func checkImageOffline(t *testing.T, name, img string) {
	ctx := context.Background()
	dir := t.TempDir()
	raw := filepath.Join(dir, name+".raw")
	if err := image.ToRaw(ctx, img, raw); err != nil {
		t.Fatal(err)
	}
	if out := imgTool(t, "sgdisk", "-v", raw); !strings.Contains(out, "No problems found") || strings.Contains(out, "Caution") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	parts, err := image.Partitions(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].Name != "ESP" || parts[1].Name != image.RootLabel {
		t.Fatalf("partitions %+v", parts)
	}
	esp, root := filepath.Join(dir, "esp.img"), filepath.Join(dir, "root.img")
	if err := image.ExtractPartition(raw, parts[0], esp); err != nil {
		t.Fatal(err)
	}
	if err := image.ExtractPartition(raw, parts[1], root); err != nil {
		t.Fatal(err)
	}
	os.Remove(raw)
	imgTool(t, "fsck.vfat", "-n", esp)
	imgTool(t, "e2fsck", "-fn", root)
	if out := imgTool(t, "dumpe2fs", "-h", root); !strings.Contains(out, "Filesystem volume name:   "+image.RootLabel) {
		t.Errorf("root label:\n%s", out)
	}
	uki := filepath.Join(dir, "BOOTX64.EFI")
	if err := extractUKI(esp, uki); err != nil {
		t.Fatal(err)
	}
	if out := imgTool(t, "objdump", "-h", uki); !strings.Contains(out, ".linux") || !strings.Contains(out, ".initrd") || !strings.Contains(out, ".cmdline") || !strings.Contains(out, ".osrel") {
		t.Errorf("the UKI's sections:\n%s", out)
	}
	if files, err := image.InitrdFiles(ctx, uki); err != nil {
		t.Error(err)
	} else if err := image.CheckInitrd(files); err != nil {
		t.Errorf("the UKI's initramfs: %v", err)
	}
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(tree, 0o700); err != nil {
		t.Fatal(err)
	}
	what := "/etc"
	if name == "golden" {
		what = "/"
	}
	imgTool(t, "debugfs", "-R", "rdump "+what+" "+tree, root)
	os.Remove(root)
	etc := filepath.Join(tree, "etc")
	if mid, err := os.ReadFile(filepath.Join(etc, "machine-id")); err != nil || len(mid) != 0 {
		t.Errorf("machine-id %q (%v): want it empty", mid, err)
	}
	found, err := image.ScanTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	if name != "golden" {
		// The scan sees a node's own keys: the host key and the WireGuard key.
		if !containsPrefix(found, "/etc/ssh/ssh_host_ed25519_key: OPENSSH PRIVATE KEY") || !containsPrefix(found, "/etc/ztwizard/wireguard/private.key: WireGuard key") {
			t.Errorf("the scan of %s found %v: want its host and WireGuard keys", name, found)
		}
		return
	}
	if len(found) > 0 {
		t.Errorf("the golden image holds private keys: %v", found)
	}
	if err := image.CheckSlim(tree); err != nil {
		t.Errorf("the golden image's root: %v", err)
	}
	f, err := os.Open(esp)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if found, err := image.ScanReader(f); err != nil || len(found) > 0 {
		t.Errorf("the golden ESP holds private keys: %v %v", found, err)
	}
	for _, p := range []string{"etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_rsa_key", "etc/wireguard/zt0.conf", "etc/ztwizard/wireguard/private.key", "etc/ztwizard/node"} {
		if _, err := os.Lstat(filepath.Join(tree, p)); err == nil {
			t.Errorf("the golden image has /%s", p)
		}
	}
	for _, p := range []string{steps.NftablesPath, steps.SSHUserCAPath, steps.BinaryPath, "/etc/cloud/cloud.cfg.d/90-ztwizard.cfg"} {
		if _, err := os.Stat(filepath.Join(tree, p)); err != nil {
			t.Errorf("the golden image lacks %s", p)
		}
	}
}

// imgTool runs a tool for a check and returns its output.
func imgTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extractUKI copies the UKI out of an ESP image, read with go-diskfs.
func extractUKI(esp, out string) error {
	d, err := diskfs.Open(esp, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return err
	}
	defer d.Close()
	fs, err := d.GetFilesystem(0)
	if err != nil {
		return err
	}
	data, err := fs.ReadFile(strings.TrimPrefix(image.BootPath, "/"))
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o600)
}

func containsPrefix(list []string, p string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// sameFile compares two files' bytes.
func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return errors.Is(ea, io.EOF) == errors.Is(eb, io.EOF) && errors.Is(ea, io.ErrUnexpectedEOF) == errors.Is(eb, io.ErrUnexpectedEOF)
		}
	}
}

// bootTimeout bounds one wait for a marker: 8 minutes (TCG on a busy
// machine), less if the test's deadline is nearer.
func bootTimeout(t *testing.T) time.Duration {
	d := 8 * time.Minute
	if dl, ok := t.Deadline(); ok {
		d = min(d, time.Until(dl)-30*time.Second)
	}
	return d
}

// imageVM is one qemu guest booting an image, its serial console in a file.
type imageVM struct {
	name   string
	cmd    *exec.Cmd
	serial string
	exited chan error
}

// bootImage boots an overlay of img (3 GiB, so the root must grow) with
// qemu: TCG, q35, OVMF (the code read-only, a copy of the variables),
// virtio disk and RNG, the serial console to a file. The guest is killed
// when the test ends.
func bootImage(t *testing.T, name, img string, extra ...string) *imageVM {
	t.Helper()
	return bootImageArgs(t, name, img, true, extra...)
}

// bootImageArgs is bootImage; with noReboot a reboot of the guest ends
// qemu, else the guest starts again.
func bootImageArgs(t *testing.T, name, img string, noReboot bool, extra ...string) *imageVM {
	t.Helper()
	dir := t.TempDir()
	disk := filepath.Join(dir, name+".qcow2")
	imgTool(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img, "-F", "qcow2", disk, "3G")
	vars := filepath.Join(dir, "OVMF_VARS_4M.fd")
	data, err := os.ReadFile(ovmfVars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, data, 0o600); err != nil {
		t.Fatal(err)
	}
	v := &imageVM{name: name, serial: filepath.Join(dir, "serial.log"), exited: make(chan error, 1)}
	args := []string{"-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic",
		"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,file=" + vars,
		"-drive", "file=" + disk + ",if=virtio,format=qcow2",
		"-device", "virtio-rng-pci",
		"-serial", "file:" + v.serial, "-monitor", "none", "-display", "none"}
	if noReboot {
		args = append(args, "-no-reboot")
	}
	v.cmd = exec.Command("qemu-system-x86_64", append(args, extra...)...)
	var stderr bytes.Buffer
	v.cmd.Stdout, v.cmd.Stderr = &stderr, &stderr
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.exited <- v.cmd.Wait() }()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.exited
		if t.Failed() {
			t.Logf("%s: qemu: %s\nlast of the serial console:\n%s", name, stderr.String(), v.tail(60))
		}
	})
	return v
}

// waitFor waits until a line of the serial console matches re and returns
// the match; it fails the test when the guest stops or time is up.
func (v *imageVM) waitFor(t *testing.T, re *regexp.Regexp, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := v.find(re); len(m) > 0 {
			return m[0]
		}
		select {
		case err := <-v.exited:
			v.exited <- err
			t.Fatalf("%s stopped (%v) before %s:\n%s", v.name, err, re, v.tail(40))
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v:\n%s", v.name, re, within, v.tail(40))
		}
	}
}

// find returns every match of re on the serial console so far.
func (v *imageVM) find(re *regexp.Regexp) []string {
	data, _ := os.ReadFile(v.serial)
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := re.FindString(sc.Text()); m != "" {
			out = append(out, m)
		}
	}
	return out
}

func (v *imageVM) tail(n int) string {
	data, _ := os.ReadFile(v.serial)
	lines := strings.Split(string(data), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestBakeAndSeedBadInput(t *testing.T) {
	dir, st := workdir(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bake", "--out", "x.qcow2"}, "exactly one of --node, --golden or --plain"},
		{[]string{"bake", "--node", "db", "--golden", "--out", "x.qcow2"}, "exactly one of --node, --golden or --plain"},
		{[]string{"bake", "--plain", "--golden", "--out", "x.qcow2"}, "exactly one of --node, --golden or --plain"},
		{[]string{"bake", "--node", "db", "--hostname", "x", "--out", "x.qcow2"}, "--hostname is for --plain images"},
		{[]string{"bake", "--plain", "--hostname", "bad_name", "--out", "x.qcow2"}, "host name"},
		{[]string{"bake", "--node", "db"}, "--out is required"},
		{[]string{"bake", "--golden", "--out", "x.qcow2", "--address", "10.0.0.1/24"}, "--address is for --node images"},
		{[]string{"bake", "--node", "db", "--out", "x.qcow2", "--size", "lots"}, `--size "lots"`},
		{[]string{"bake", "--node", "db", "--out", "x.qcow2", "--size", "100M"}, "at least 512M"},
		{[]string{"bake", "--node", "db", "--out", "x.qcow2", "--format", "vmdk"}, `--format "vmdk"`},
		{[]string{"bake", "--node", "db", "--out", "x.img", "--format", "raw", "--compress"}, "--compress is for qcow2"},
		{[]string{"bake", "--node", "db", "--out", "x.qcow2", "--address", "10.0.0.1"}, "prefix length"},
		{[]string{"bake", "--node", "dbb", "--out", "x.qcow2"}, `unknown node "dbb" (did you mean "db"?)`},
		{[]string{"seed", "--node", "db"}, "--node and --out are required"},
		{[]string{"seed", "--node", "db", "--out", "s.iso", "--gateway", "10.0.0.1"}, "need --address"},
		{[]string{"seed", "--node", "wbe", "--out", "s.iso"}, `unknown node "wbe"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := ztw(t, dir, append(tt.args, "--state", st)...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q: want 2 and %q", r.code, r.stderr, tt.want)
			}
			if _, err := os.Stat(st); !os.IsNotExist(err) {
				t.Fatal("bad input created the state folder")
			}
		})
	}
	for _, args := range [][]string{{"bake"}, {"seed"}, {"firstboot"}, {"selfcheck"}} {
		r := ztw(t, dir, append(args, "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "ztwizard "+args[0]) {
			t.Errorf("%v --help: %+v", args, r)
		}
	}
}

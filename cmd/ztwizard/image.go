package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"ztwizard/image"
	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/pki"
)

// imageFlags are what bake and seed share.
type imageFlags struct {
	node    string
	out     string
	address string
	gateway string
	dns     []string
}

func (f *imageFlags) network() image.Network {
	return image.Network{Address: f.address, Gateway: f.gateway, DNS: f.dns}
}

func (f *imageFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.node, "node", "", "the node the image (or seed) makes")
	fl.StringVar(&f.out, "out", "", "the file to write")
	fl.StringVar(&f.address, "address", "", "a fixed address with its prefix for the Ethernet interfaces (default: DHCP)")
	fl.StringVar(&f.gateway, "gateway", "", "the default gateway, with --address")
	fl.StringSliceVar(&f.dns, "dns", nil, "name servers, with --address")
}

func bakeCmd(g *globals) *cobra.Command {
	var f imageFlags
	var golden, plain, compress bool
	var suite, mirror, cache, format, size, overlay, hostname string
	var packages []string
	cmd := &cobra.Command{
		Use:   "bake",
		Short: "Bake a bootable qcow2 appliance: one node, or a golden image",
		Long: `Builds a UEFI-bootable disk image: a Debian root filesystem (mmdebstrap from
this host's apt sources, or --mirror; cached by suite and package set under
--cache), the node's files written into it as apply --root would, its units
enabled, the firewall loaded before the network, an ext4 root labelled root,
and a GPT disk whose EFI system partition holds a unified kernel image at
EFI/BOOT/BOOTX64.EFI. qemu-img makes the qcow2.

--node N bakes node N with its secrets (TLS keys, WireGuard key, an SSH host
key signed by the host CA): the image is written 0600.
--golden bakes an image any node can start from: no private key of any kind,
cloud-init included; ztwizard seed makes the seed that turns it into a node.
--plain bakes a plain Debian server with no site in it (stock daemons on
their default addresses, ztwizard installed but not applied, SSH host keys
made on its first boot): a machine to try apply, plan or a bundle on.

The root grows to the disk on every boot, so qemu-img resize is all a bigger
disk needs. With SOURCE_DATE_EPOCH set, the same inputs and cache give the
same image, byte for byte. Baking needs root.`,
		Example: `  ztwizard bake -c site.yaml --node db --out db.qcow2 --address 192.168.1.100/24
  ztwizard bake -c site.yaml --golden --out golden.qcow2 --compress
  qemu-system-x86_64 -machine q35 -m 1024 -nographic \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive if=pflash,format=raw,file=OVMF_VARS_4M.fd -drive file=db.qcow2,if=virtio`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n := btoi(golden) + btoi(plain) + btoi(f.node != ""); n != 1 {
				return usagef("give exactly one of --node, --golden or --plain")
			}
			if hostname != "" && !plain {
				return usagef("--hostname is for --plain images; a node's host name is its name")
			}
			if f.out == "" {
				return usagef("--out is required")
			}
			if golden && f.address != "" {
				return usagef("--address is for --node images; a golden image's node gets its address from its seed")
			}
			bytes, err := parseSize(size)
			if err != nil {
				return usagef("--size %q: %v", size, err)
			}
			if format != image.FormatQcow2 && format != image.FormatRaw {
				return usagef("--format %q: want qcow2 or raw", format)
			}
			if compress && format != image.FormatQcow2 {
				return usagef("--compress is for qcow2 images")
			}
			if _, err := image.NetworkFiles(f.network()); err != nil {
				return usageError{err}
			}
			epoch, err := sourceDateEpoch()
			if err != nil {
				return usageError{err}
			}
			if os.Geteuid() != 0 {
				return errors.New("bake: baking needs root (the root filesystem keeps its files' owners)")
			}
			var content *image.Content
			switch {
			case plain:
				if hostname == "" {
					hostname = "server"
				}
				content, err = image.PlainContent(hostname, f.network())
				if err != nil {
					err = usageError{err}
				}
			case golden:
				content, err = goldenContent(cmd.Context(), g)
			default:
				content, err = nodeContent(cmd.Context(), g, f.node, f.network())
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			spec, err := bakeSpec(content, bakeChoices{suite: suite, mirror: mirror, cache: cache, packages: packages,
				overlay: overlay, size: bytes, epoch: epoch, out: f.out, format: format, compress: compress})
			if err != nil {
				return err
			}
			spec.Progress = newProgressPrinter(out).report
			res, err := image.Bake(cmd.Context(), spec)
			if err != nil {
				return err
			}
			what := "node " + content.Node + " of site " + content.Site
			switch {
			case plain:
				what = "plain server " + content.Hostname
			case golden:
				what = "golden image of site " + content.Site
			}
			fmt.Fprintf(out, "baked %s into %s: %s, %d MiB disk, %d MiB file, kernel %s\n",
				what, res.Out, spec.Format, res.RawSize>>20, res.FileSize>>20, res.Kernel)
			if len(res.Skipped) > 0 {
				fmt.Fprintf(out, "  not in the image, not enabled: %s (add their packages with --package)\n", strings.Join(res.Skipped, " "))
			}
			return nil
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&golden, "golden", false, "bake a golden image: no secrets, cloud-init, a node's identity from its seed")
	fl.BoolVar(&plain, "plain", false, "bake a plain Debian server with no site applied (to try the live path on)")
	fl.StringVar(&hostname, "hostname", "", "the host name of a --plain image (default server)")
	fl.StringVar(&suite, "suite", image.DefaultSuite, "the Debian suite")
	fl.StringVar(&mirror, "mirror", "", "the Debian archive URL (default: this host's apt sources)")
	fl.StringSliceVar(&packages, "package", nil, "more Debian packages for the image (repeat or comma-separate)")
	fl.StringVar(&cache, "cache", image.DefaultCache(), "where root filesystems are cached")
	fl.StringVar(&size, "size", "2G", "the disk's size (M or G); the root grows to a bigger disk at boot")
	fl.StringVar(&format, "format", image.FormatQcow2, "qcow2 or raw")
	fl.BoolVar(&compress, "compress", false, "compress the qcow2 (smaller, slower to write)")
	fl.StringVar(&overlay, "overlay", "", "a folder copied over the root last (your units in etc/systemd/system are enabled)")
	return cmd
}

func seedCmd(g *globals) *cobra.Command {
	var f imageFlags
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Write the cloud-init NoCloud seed that turns a golden image into a node",
		Long: `Writes an ISO9660 image labelled cidata (cloud-init's NoCloud seed) for one
node: meta-data and user-data for cloud-init (the host name),
ztwizard/bundle.ztb, the node's bundle as ` + "`ztwizard bundle`" + ` writes it (its TLS
keys and certificates, its WireGuard key, a new SSH host key and its
certificate from the site's host CA, signed by the CA with the node's next
serial), and ztwizard/seed.json with the image's own files (host name,
network). First boot checks the bundle against the golden image's CA
certificate before it writes anything. Attached to a golden image (a CD-ROM or a disk) it is
applied by ztwizard's first boot, before the network starts. It holds private
keys: it is written 0600; detach it once the node is up.`,
		Example: `  ztwizard seed -c site.yaml --node db --out db-seed.iso --address 192.168.1.100/24
  qemu-system-x86_64 ... -drive file=golden.qcow2,if=virtio \
    -device virtio-scsi-pci -drive if=none,id=seed,media=cdrom,file=db-seed.iso -device scsi-cd,drive=seed`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.node == "" || f.out == "" {
				return usagef("--node and --out are required")
			}
			if _, err := image.NetworkFiles(f.network()); err != nil {
				return usageError{err}
			}
			content, serial, err := seedContent(cmd.Context(), g, f.node, f.network())
			if err != nil {
				return err
			}
			if err := image.WriteSeed(f.out, filepath.Dir(f.out), content); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote the seed of node %s of site %s to %s: its bundle (serial %d) and %d files of the image's, units %s\n",
				content.Node, content.Site, f.out, serial, len(content.Files), strings.Join(content.Enable, " "))
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

// seedContent builds a seed's content: the node's bundle, with a new SSH
// host key made here, and the image's own files.
func seedContent(ctx context.Context, g *globals, node string, net image.Network) (*image.Content, uint64, error) {
	s, err := open(ctx, g, true, func(site *steps.Site) error { return authority.CheckNode(site, node) })
	if err != nil {
		return nil, 0, err
	}
	defer s.close()
	if err := s.auth.KeysHere(node); err != nil {
		return nil, 0, err
	}
	hk, err := image.NewHostKey("root@" + node)
	if err != nil {
		return nil, 0, err
	}
	data, p, err := s.auth.BundleWithHostKey(node, hk.Private)
	if err != nil {
		return nil, 0, err
	}
	c, err := image.SeedContent(s.site.Site, node, net, data)
	if err != nil {
		return nil, 0, err
	}
	return c, p.Serial, nil
}

// nodeContent gathers a node's secrets, signs a new host key for it and
// builds its content; the state lock is held only meanwhile.
func nodeContent(ctx context.Context, g *globals, node string, net image.Network) (*image.Content, error) {
	s, err := open(ctx, g, true, func(site *steps.Site) error { return authority.CheckNode(site, node) })
	if err != nil {
		return nil, err
	}
	defer s.close()
	return nodeContentFrom(s.auth, node, net, g.now())
}

// nodeContentFrom builds a node's content with an open, locked authority.
func nodeContentFrom(a *authority.Authority, node string, net image.Network, now time.Time) (*image.Content, error) {
	sec, err := a.Secrets(node)
	if err != nil {
		return nil, err
	}
	hk, err := image.NewHostKey("root@" + node)
	if err != nil {
		return nil, err
	}
	signed, err := a.SignHost(node, hk.Key, nil, 0)
	if err != nil {
		return nil, err
	}
	sec.HostCert = []byte(signed.Line)
	plan, err := steps.BuildPlan(a.Site, node, sec, now)
	if err != nil {
		return nil, err
	}
	return image.NodeContent(plan, hk, net)
}

// goldenContent gathers the public parts of the site's CAs and builds the
// golden image's content.
func goldenContent(ctx context.Context, g *globals) (*image.Content, error) {
	s, err := open(ctx, g, true, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return goldenContentFrom(s.auth)
}

// goldenContentFrom builds the golden content with an open, locked authority.
func goldenContentFrom(a *authority.Authority) (*image.Content, error) {
	ca, _, err := a.CA()
	if err != nil {
		return nil, err
	}
	sec := &steps.Secrets{CACert: pki.EncodeCertPEM(ca.Cert)}
	for _, kind := range []string{authority.KindSSHUserCA, authority.KindSSHHostCA} {
		if _, _, err := a.SSHCA(kind); err != nil {
			return nil, err
		}
	}
	if sec.SSHUserCA, err = a.Store.ReadFile(authority.SSHUserCAFile + ".pub"); err != nil {
		return nil, fmt.Errorf("bake: %w", err)
	}
	if sec.SSHHostCA, err = a.Store.ReadFile(authority.SSHHostCAFile + ".pub"); err != nil {
		return nil, fmt.Errorf("bake: %w", err)
	}
	if ok, err := a.Store.Exists(authority.KRLFile); err != nil {
		return nil, fmt.Errorf("bake: %w", err)
	} else if !ok {
		if _, err := a.KRL(); err != nil {
			return nil, err
		}
	}
	if sec.KRL, err = a.Store.ReadFile(authority.KRLFile); err != nil {
		return nil, fmt.Errorf("bake: %w", err)
	}
	if sec.Addresses, err = a.MeshAddresses(); err != nil {
		return nil, err
	}
	return image.GoldenContent(a.Site, sec)
}

// bakeChoices are the bake's settings besides its content.
type bakeChoices struct {
	suite, mirror, cache, overlay, out, format string
	packages                                   []string
	size, epoch                                int64
	compress                                   bool
}

// bakeSpec assembles what image.Bake needs: the root filesystem from this
// host's apt sources, the packages (cloud-init for golden images), this
// binary, and the image written 0600 unless it is golden.
func bakeSpec(content *image.Content, c bakeChoices) (image.Spec, error) {
	golden := content.Node == "" && !content.Plain
	sources, err := image.AptSources("/", c.suite, c.mirror)
	if err != nil {
		return image.Spec{}, usageError{err}
	}
	pk := append(append([]string{}, image.BasePackages...), c.packages...)
	if golden {
		pk = append(pk, image.CloudInitPackages...)
	}
	bin, err := os.Executable()
	if err != nil {
		return image.Spec{}, fmt.Errorf("bake: %w", err)
	}
	mode := os.FileMode(0o600)
	if golden {
		mode = 0o644
	}
	return image.Spec{
		Rootfs:   image.RootfsSpec{Suite: c.suite, Sources: sources, Packages: pk, Cache: c.cache},
		Content:  *content,
		Binary:   bin,
		Overlay:  c.overlay,
		Golden:   golden,
		Size:     c.size,
		Epoch:    c.epoch,
		Out:      c.out,
		Format:   c.format,
		Compress: c.compress,
		Mode:     mode,
	}, nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH; 0 when unset.
func sourceDateEpoch() (int64, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", v)
	}
	return n, nil
}

// parseSize reads 2G, 1536M or a byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("want a size like 2G or 1536M")
	}
	if n*mult < 512<<20 {
		return 0, errors.New("at least 512M")
	}
	return n * mult, nil
}

// progressPrinter prints a bake's stages as they start and end.
type progressPrinter struct {
	w     io.Writer
	start map[string]time.Time
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	return &progressPrinter{w: w, start: map[string]time.Time{}}
}

func (p *progressPrinter) report(stage string, done, total int64) {
	n := 0
	for i, s := range image.Stages {
		if s == stage {
			n = i + 1
		}
	}
	if _, started := p.start[stage]; !started {
		p.start[stage] = time.Now()
		fmt.Fprintf(p.w, "[%d/%d] %s ...\n", n, len(image.Stages), stage)
	}
	if done == total {
		fmt.Fprintf(p.w, "[%d/%d] %s done in %.1fs\n", n, len(image.Stages), stage, time.Since(p.start[stage]).Seconds())
	}
}

func firstbootCmd(g *globals) *cobra.Command {
	var root, seed string
	cmd := &cobra.Command{
		Use:   "firstboot",
		Short: "A node image's first boot: apply its seed, make missing keys",
		Long: `What ztwizard-firstboot.service runs on an image's first boot, before the
network: if a NoCloud seed (an ISO9660 volume labelled cidata) made by
ztwizard seed is attached, its files are written and its units enabled and
started; then the SSH host key and the WireGuard key are made if missing;
then /var/lib/ztwizard/firstboot.done marks the boot done. Run it by hand
with --seed to seed a node later (remove firstboot.done first, or not: the
seed's files are written either way).`,
		Example: `  ztwizard firstboot -c /etc/ztwizard/site.yaml
  ztwizard firstboot --seed /dev/sr0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			siteName := ""
			if site, err := steps.Load(nodeSitePath(g, root)); err == nil {
				siteName = site.Site
			}
			fb := image.FirstBoot{Root: root, Site: siteName, Seed: seed, Live: root == "/", Log: cmd.OutOrStdout()}
			_, err := fb.Do(cmd.Context())
			return err
		},
	}
	cmd.Flags().StringVar(&root, "root", "/", "the node's root folder (an image's tree)")
	cmd.Flags().StringVar(&seed, "seed", "", "the seed to apply, an ISO file or a device (default: look for one)")
	return cmd
}

// nodeSitePath is the site file on a node whose root is root: -c taken
// inside root, the node's own site file when -c is not absolute.
func nodeSitePath(g *globals, root string) string {
	p := g.site
	if !filepath.IsAbs(p) {
		p = steps.SiteFilePath
	}
	return filepath.Join(root, strings.TrimPrefix(p, filepath.Clean(root)))
}

func selfcheckCmd(g *globals) *cobra.Command {
	var root, node string
	var wait, timeout time.Duration
	var listen string
	var probe, closed []string
	cmd := &cobra.Command{
		Use:   "selfcheck",
		Short: "Check a booted node and print one ZTWIZARD-SELFCHECK line",
		Long: `Checks what a node image promises and prints one line: the inet ztwizard
table drops by default and was loaded before the network started; the
WireGuard interface is up with one peer per link of the node; sshd trusts the
site's user CA; each database file binds the database to the mesh address.
It retries until every check passes or --wait is over; exit 1 on failure.

--listen ADDR serves a greeting on a TCP address (a stand-in for a database);
--probe ADDR must answer and --closed ADDR must not: a ZTWIZARD-PROBE line
says which did, and which WireGuard peers completed a handshake.`,
		Example: `  ztwizard selfcheck -c /etc/ztwizard/site.yaml
  ztwizard selfcheck --probe 10.100.0.1:3306 --closed 192.168.1.100:3306`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			ctx := cmd.Context()
			if node == "" {
				if b, err := os.ReadFile(filepath.Join(root, image.NodeFilePath)); err == nil {
					node = strings.TrimSpace(string(b))
				}
			}
			if listen != "" {
				return image.Listen(ctx, listen, "ztwizard "+node, out)
			}
			if len(probe)+len(closed) > 0 {
				line, ok := image.Probe{Root: root, Open: probe, Closed: closed, Timeout: timeout}.Do(ctx)
				fmt.Fprintln(out, line)
				if !ok {
					return errors.New("selfcheck: the probe failed")
				}
				return nil
			}
			site, err := steps.Load(nodeSitePath(g, root))
			if err != nil {
				return usageError{fmt.Errorf("selfcheck: %w", err)}
			}
			r := image.SelfCheck{Root: root, Site: site, Node: node}.Wait(ctx, wait)
			fmt.Fprintln(out, r.Line())
			if !r.OK() {
				return errors.New("selfcheck: " + strings.Join(r.Problems, "; "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "/", "the node's root folder")
	f.StringVar(&node, "node", "", "the node (default: from /etc/ztwizard/node; none on a golden image)")
	f.DurationVar(&wait, "wait", 3*time.Minute, "retry failing checks this long")
	f.StringVar(&listen, "listen", "", "serve a greeting on this TCP address until stopped")
	f.StringSliceVar(&probe, "probe", nil, "TCP addresses that must answer")
	f.StringSliceVar(&closed, "closed", nil, "TCP addresses that must not answer")
	f.DurationVar(&timeout, "timeout", 3*time.Minute, "how long --probe addresses are retried")
	return cmd
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

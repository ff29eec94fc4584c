package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"ztwizard/steps"
	"ztwizard/steps/host"
)

// FirstBootDone marks a node whose first boot has run; the first-boot
// unit does not run again while it exists.
const FirstBootDone = "/var/lib/ztwizard/firstboot.done"

// FirstBoot is one run of a node's first boot, what ztwizard-firstboot.service
// runs: apply the seed's files if a seed is there, make the SSH host key
// and the WireGuard key if they are missing, and mark the boot done.
type FirstBoot struct {
	Root string    // the node's root: "/" on the node
	Site string    // the image's site; a seed of another site is refused ("" accepts any)
	Seed string    // a seed (ISO file or block device); "" looks for one when Live
	Live bool      // running on the booted node: find the seed, reload systemd and the firewall, start the seed's units
	Log  io.Writer // what was done, one line each; may be nil
	// Now is the clock a seed's bundle is checked at; time.Now when nil.
	Now func() time.Time
	// Run runs a command (systemctl, nft, udevadm); exec when nil.
	Run func(ctx context.Context, name string, args ...string) error
}

// FirstBootReport says what a first boot did.
type FirstBootReport struct {
	Seed      string   // the seed applied, "" for none
	Node      string   // the node the seed made, "" for none
	Written   []string // the seed's files written
	Missing   []string // the seed's units the image does not have
	HostKey   string   // the fingerprint of the SSH host key made, "" when there was one
	WireGuard string   // the public key of the WireGuard key made, "" when there was one
	Started   []string // units started
}

// Do runs the first boot.
func (fb FirstBoot) Do(ctx context.Context) (*FirstBootReport, error) {
	if fb.Root == "" {
		fb.Root = "/"
	}
	logf := func(format string, a ...any) {
		if fb.Log != nil {
			fmt.Fprintf(fb.Log, "ztwizard firstboot: "+format+"\n", a...)
		}
	}
	rep := &FirstBootReport{}
	seed := fb.Seed
	if seed == "" && fb.Live {
		// Devices are still being probed this early: wait for udev's queue.
		_ = fb.run(ctx, "udevadm", "settle", "--timeout=15")
		var err error
		if seed, err = FindSeed("/sys/class/block", "/dev"); err != nil {
			logf("looking for a seed: %v", err)
		}
	}
	var c *Content
	var held func() error // records the seed's bundle as applied
	if seed != "" {
		var err error
		c, err = ReadSeed(seed)
		if errors.Is(err, ErrNotOurSeed) {
			// Made for cloud-init alone (a provider's user-data, say):
			// cloud-init reads it, first boot goes on as without a seed.
			logf("%s is a NoCloud seed without ztwizard's files: left to cloud-init", seed)
			seed, c, err = "", nil, nil
		}
		if err != nil {
			return rep, err
		}
	}
	if seed != "" {
		var err error
		if fb.Site != "" && c.Site != fb.Site {
			return rep, fmt.Errorf("image: seed %s is for site %q, this image is site %q's", seed, c.Site, fb.Site)
		}
		if c.Bundle != nil {
			now := time.Now
			if fb.Now != nil {
				now = fb.Now
			}
			if held, err = fb.fromBundle(c, now()); err != nil {
				return rep, err
			}
		}
		written, err := host.WriteFiles(fb.Root, c.Files)
		if err != nil {
			return rep, fmt.Errorf("image: seed %s: %w", seed, err)
		}
		if fb.Root != "/" {
			if err := chownInRoot(fb.Root, c.Files); err != nil {
				return rep, err
			}
		}
		missing, err := EnableUnits(fb.Root, c.Enable)
		if err != nil {
			return rep, err
		}
		if held != nil {
			if err := held(); err != nil {
				return rep, err
			}
		}
		rep.Seed, rep.Node, rep.Written, rep.Missing = seed, c.Node, written, missing
		logf("applied seed %s: node %s of site %s, %d files written, units enabled: %s", seed, c.Node, c.Site, len(written), strings.Join(c.Enable, " "))
		if len(missing) > 0 {
			logf("not in this image, not enabled: %s", strings.Join(missing, " "))
		}
	}
	if err := fb.hostKey(rep); err != nil {
		return rep, err
	}
	if rep.HostKey != "" {
		logf("made the SSH host key %s (sign it: ztwizard ssh sign --host NODE --key %s.pub)", rep.HostKey, steps.SSHHostKeyPath)
	}
	if err := fb.wireGuardKey(rep); err != nil {
		return rep, err
	}
	if rep.WireGuard != "" {
		logf("made a WireGuard key, public key %s", rep.WireGuard)
	}
	if fb.Live && c != nil {
		if err := fb.activate(ctx, c, rep); err != nil {
			return rep, err
		}
		if len(rep.Started) > 0 {
			logf("started %s", strings.Join(rep.Started, " "))
		}
	}
	done := filepath.Join(fb.Root, FirstBootDone)
	if err := os.MkdirAll(filepath.Dir(done), 0o700); err != nil {
		return rep, fmt.Errorf("image: firstboot: %w", err)
	}
	mark := fmt.Sprintf("%s node=%s seed=%s\n", time.Now().UTC().Format(time.RFC3339), rep.Node, rep.Seed)
	if err := os.WriteFile(done, []byte(mark), 0o644); err != nil {
		return rep, fmt.Errorf("image: firstboot: %w", err)
	}
	return rep, nil
}

// hostKey makes the Ed25519 SSH host key when the node has none.
func (fb FirstBoot) hostKey(rep *FirstBootReport) error {
	if _, err := os.Stat(filepath.Join(fb.Root, steps.SSHHostKeyPath)); err == nil {
		return nil
	}
	name, _ := os.ReadFile(filepath.Join(fb.Root, "etc/hostname"))
	k, err := NewHostKey("root@" + strings.TrimSpace(string(name)))
	if err != nil {
		return err
	}
	_, err = host.WriteFiles(fb.Root, []steps.File{
		{Path: steps.SSHHostKeyPath, Mode: 0o600, Content: k.Private},
		{Path: steps.SSHHostKeyPath + ".pub", Mode: 0o644, Content: k.Public},
	})
	if err != nil {
		return fmt.Errorf("image: host key: %w", err)
	}
	rep.HostKey = ssh.FingerprintSHA256(k.Key)
	return nil
}

// wireGuardKey makes the WireGuard private key when the node has none.
func (fb FirstBoot) wireGuardKey(rep *FirstBootReport) error {
	if _, err := os.Stat(filepath.Join(fb.Root, steps.WireGuardKeyPath)); err == nil {
		return nil
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return fmt.Errorf("image: WireGuard key: %w", err)
	}
	dir := filepath.Join(fb.Root, filepath.Dir(steps.WireGuardKeyPath))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("image: WireGuard key: %w", err)
	}
	if _, err := host.WriteFiles(fb.Root, []steps.File{{Path: steps.WireGuardKeyPath, Mode: 0o600, Content: []byte(k.String() + "\n")}}); err != nil {
		return fmt.Errorf("image: WireGuard key: %w", err)
	}
	rep.WireGuard = k.PublicKey().String()
	return nil
}

// activate makes the running node take the seed: systemd reloads its
// units, the new firewall replaces the golden one, the host takes its
// name, and the seed's units start (without waiting: this runs before
// the network).
func (fb FirstBoot) activate(ctx context.Context, c *Content, rep *FirstBootReport) error {
	if err := fb.run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	if err := fb.run(ctx, "nft", "-f", steps.NftablesPath); err != nil {
		return err
	}
	if c.Hostname != "" {
		if err := os.WriteFile("/proc/sys/kernel/hostname", []byte(c.Hostname), 0o644); err != nil {
			return fmt.Errorf("image: host name: %w", err)
		}
	}
	var start []string
	for _, u := range c.Enable {
		if !slices.Contains(rep.Missing, u) {
			start = append(start, u)
		}
	}
	if len(start) == 0 {
		return nil
	}
	if err := fb.run(ctx, "systemctl", append([]string{"start", "--no-block"}, start...)...); err != nil {
		return err
	}
	rep.Started = start
	return nil
}

func (fb FirstBoot) run(ctx context.Context, name string, args ...string) error {
	if fb.Run != nil {
		return fb.Run(ctx, name, args...)
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || len(out) > 0 {
			return fmt.Errorf("image: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return fmt.Errorf("image: %s: %w", name, err)
	}
	return nil
}

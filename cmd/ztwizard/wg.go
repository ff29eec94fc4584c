package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.zx2c4.com/wireguard/wgctrl"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/host"
	"ztwizard/steps/qrtext"
	"ztwizard/steps/wgdevice"
)

func wgCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wg",
		Short: "WireGuard: export a node's wg-quick file, run a userspace device",
		Long: `A node's WireGuard configuration for a device ztwizard does not manage (a
phone, a laptop), and the userspace device ztwizard runs where the kernel has
no WireGuard.`,
		Example: `  ztwizard wg export -c site.yaml --node web --out web.conf
  ztwizard wg export -c site.yaml --node web --qr
  ztwizard wg device zt0 --config /etc/wireguard/zt0.conf`,
		Args: noArgs,
	}
	cmd.AddCommand(wgExportCmd(g), wgDeviceCmd())
	return cmd
}

func wgExportCmd(g *globals) *cobra.Command {
	var node, out string
	var showQR bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print a node's wg-quick configuration, write it to a file, or show it as a QR code",
		Long: `Exports the node's wg-quick file, its private key inlined so the file works on
its own (in a phone's WireGuard app, or /etc/wireguard on a machine ztwizard
does not manage). Treat it as a secret: --out writes it mode 0600 (atomically,
never through a symbolic link); --qr shows it as a QR code for the WireGuard
app to scan (light on dark: painted so on a colour terminal). Without either
it is printed.`,
		Example: `  ztwizard wg export -c site.yaml --node web --out web.conf
  ztwizard wg export -c site.yaml --node web --qr
  ztwizard wg export -c site.yaml --node web --out /etc/wireguard/zt0.conf --qr`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return usagef("--node is required")
			}
			if out != "" {
				if err := checkOut(out); err != nil {
					return err
				}
			}
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error { return authority.CheckNode(site, node) })
			if err != nil {
				return err
			}
			defer s.close()
			sec, err := s.auth.Secrets(node)
			if err != nil {
				return err
			}
			text, err := steps.WGQuickStandalone(s.site, node, sec)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "" && !showQR {
				_, err = w.Write(text)
				return err
			}
			if out != "" {
				if err := atomicfile.WriteFile(out, text, 0o600); err != nil {
					return fmt.Errorf("wg export: --out %s: %w", out, err)
				}
				fmt.Fprintf(w, "wrote node %s's wg-quick file to %s (mode 0600; it holds the private key)\n", node, out)
			}
			if showQR {
				code, err := qrtext.Draw(qrtext.WireGuard(text))
				if err != nil {
					return fmt.Errorf("wg export: %w", err)
				}
				fmt.Fprintf(w, "node %s: scan with the WireGuard app (the code holds the private key)\n", node)
				printQR(w, code, styled())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node to export")
	cmd.Flags().StringVar(&out, "out", "", "write the file here (mode 0600, atomically) instead of printing it")
	cmd.Flags().BoolVar(&showQR, "qr", false, "show the configuration as a QR code for the WireGuard app")
	return cmd
}

// checkOut refuses an --out that is a symbolic link, a folder, or in a
// folder that does not exist, before anything is done.
func checkOut(out string) error {
	fi, err := os.Lstat(out)
	switch {
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		return usagef("--out %s: is a symbolic link; give the real path (a private key is never written through a link)", out)
	case err == nil && !fi.Mode().IsRegular():
		return usagef("--out %s: is not a regular file", out)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return usagef("--out %s: %v", out, unwrapPath(err))
	}
	dir := filepath.Dir(out)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return usagef("--out %s: the folder %s does not exist", out, dir)
	}
	return nil
}

// printQR writes a QR code drawn by qrtext.Draw: painted white on black
// where colour is allowed, so it scans on any terminal; as it is
// otherwise, which reads right on a dark terminal.
func printQR(w io.Writer, code string, paint bool) {
	for _, line := range strings.Split(code, "\n") {
		if paint {
			line = "\x1b[97;40m" + line + "\x1b[0m"
		}
		fmt.Fprintln(w, line)
	}
}

func wgDeviceCmd() *cobra.Command {
	var config string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "device NAME",
		Short: "Bring up a WireGuard interface: the kernel's, or a userspace device",
		Long: `With --config FILE (a wg-quick file as ztwizard writes it), brings the interface
NAME up as the ztwizard-wg@ unit does at boot, without waiting for the network:
where the kernel has WireGuard it makes the link with netlink, configures it
(key, peers, addresses) and exits; where it has none it runs a userspace
device configured the same way until stopped. Peers whose endpoint is a name
that does not resolve yet are configured without it.

Without --config it runs an unconfigured userspace device, configurable with
wg and wgctrl through /var/run/wireguard/NAME.sock.

A userspace device logs its errors; --verbose adds what it says about every
peer it adds or changes (about seven lines a peer).`,
		Example: `  ztwizard wg device zt0 --config /etc/wireguard/zt0.conf`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("wg device takes one argument: the interface name")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var iface steps.Interface
			if config != "" {
				data, err := os.ReadFile(config)
				if err != nil {
					return usagef("--config %s: %v", config, unwrapPath(err))
				}
				if iface, err = steps.ParseWGQuick(name, data, os.ReadFile); err != nil {
					return usageError{err}
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			logf := func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) }
			if config != "" {
				kernel, err := host.UpAtBoot(ctx, iface, logf)
				if err != nil {
					return err
				}
				if kernel {
					logf("wireguard: %s is the kernel's, configured from %s", name, filepath.Base(config))
					return nil
				}
			}
			done := make(chan error, 1)
			var verbosef func(string, ...any)
			if verbose {
				verbosef = logf
			}
			go func() { done <- wgdevice.Run(ctx, name, logf, verbosef) }()
			if config != "" {
				if err := wgdevice.Ready(name, 10*time.Second); err != nil {
					stop()
					return errors.Join(err, <-done)
				}
				if err := configure(ctx, iface, logf); err != nil {
					stop()
					return errors.Join(err, <-done)
				}
				logf("wgdevice: %s configured from %s", name, filepath.Base(config))
			}
			return <-done
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "a wg-quick file to configure the device from")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log what a userspace device says about each peer")
	return cmd
}

// configure applies a parsed wg-quick file to a running device.
func configure(ctx context.Context, iface steps.Interface, logf func(string, ...any)) error {
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	defer c.Close()
	return host.ConfigureAtBoot(ctx, c, iface, logf)
}

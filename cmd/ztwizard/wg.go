package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.zx2c4.com/wireguard/wgctrl"

	"ztwizard/steps"
	"ztwizard/steps/authority"
	"ztwizard/steps/host"
	"ztwizard/steps/wgdevice"
)

func wgCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wg",
		Short: "WireGuard: export a node's wg-quick file, run a userspace device",
		Args:  noArgs,
	}
	cmd.AddCommand(wgExportCmd(g), wgDeviceCmd())
	return cmd
}

func wgExportCmd(g *globals) *cobra.Command {
	var node string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Print a node's wg-quick configuration",
		Long: `Prints the node's wg-quick file, its private key inlined so the file works on
its own (in a phone's WireGuard app, or /etc/wireguard on a machine ztwizard
does not manage). Treat the output as a secret.`,
		Example: `  ztwizard wg export -c site.yaml --node web > web.conf`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return usagef("--node is required")
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
			_, err = cmd.OutOrStdout().Write(text)
			return err
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node to export")
	return cmd
}

func wgDeviceCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "device NAME",
		Short: "Run a userspace WireGuard device (for kernels without WireGuard)",
		Long: `Runs a userspace WireGuard device named NAME until stopped, configurable with
wg and wgctrl through /var/run/wireguard/NAME.sock. With --config it then
configures itself from a wg-quick file as ztwizard writes it (addresses, key,
peers), as the ztwizard-wg@ unit does at boot.`,
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
			done := make(chan error, 1)
			go func() { done <- wgdevice.Run(ctx, name, logf) }()
			if config != "" {
				if err := wgdevice.Ready(name, 10*time.Second); err != nil {
					stop()
					return errors.Join(err, <-done)
				}
				if err := configure(iface); err != nil {
					stop()
					return errors.Join(err, <-done)
				}
				logf("wgdevice: %s configured from %s", name, filepath.Base(config))
			}
			return <-done
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "a wg-quick file to configure the device from")
	return cmd
}

// configure applies a parsed wg-quick file to a running device.
func configure(iface steps.Interface) error {
	c, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wireguard: %w", err)
	}
	defer c.Close()
	return host.ConfigureInterface(c, iface)
}

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
	"ztwizard/steps/bundle"
	"ztwizard/steps/host"
	"ztwizard/steps/monitor"
	"ztwizard/steps/pki"
	"ztwizard/steps/state"
)

func nodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "A live node's request: its public keys, CSRs and SSH host key, for the CA host",
		Long: `The fleet loop: on each node, ` + "`node request`" + ` makes the node's own private keys
where they are used (if missing) and writes only public material to N.req; on
the CA host, ` + "`node import N.req`" + ` checks it against the site and records it, and
` + "`bundle --node N`" + ` then signs the node's certificates for the keys it holds.`,
		Args: noArgs,
	}
	cmd.AddCommand(nodeRequestCmd(g), nodeImportCmd(g), nodePullCmd(g))
	return cmd
}

func nodeRequestCmd(g *globals) *cobra.Command {
	var node, out, root string
	cmd := &cobra.Command{
		Use:   "request",
		Short: "On a node: make its own keys if missing and write its public request",
		Long: `Run on the node itself (as root). Makes the node's private keys where they are
used, if missing: the WireGuard key (` + steps.WireGuardKeyPath + `), a TLS key
per service the node runs (` + steps.TLSDir + `/SERVICE.key, the site's CA key type)
and the SSH Ed25519 host key (` + steps.SSHHostKeyPath + `), each 0600. Writes
--out with public material only: the WireGuard public key, a certificate
request (CSR) per service and the SSH host public key. Carry it to the CA
host and run ` + "`ztwizard node import`" + `. Needs no state and no CA.`,
		Example: `  ztwizard node request -c site.yaml --node web --out web.req
  scp web.req admin@ca-host:`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" || out == "" {
				return usagef("--node and --out are required")
			}
			site, err := loadSite(g)
			if err != nil {
				return err
			}
			if err := authority.CheckNode(site, node); err != nil {
				return err
			}
			if filepath.Clean(root) == "/" && os.Geteuid() != 0 {
				return usagef("making this host's keys needs root; use --root DIR to work in a folder")
			}
			req, made, err := bundle.MakeRequest(root, site, node, g.now())
			if err != nil {
				return err
			}
			data, err := req.Marshal()
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(out, data, 0o644); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, m := range made {
				fmt.Fprintf(w, "made %s\n", m)
			}
			fmt.Fprintf(w, "wrote the request of node %s to %s: WireGuard %s, %d CSR(s), SSH host key; no private key\n",
				node, out, req.WireGuardPublicKey, len(req.CSRs))
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node this host is")
	cmd.Flags().StringVar(&out, "out", "", "the request file to write (public material, 0644)")
	cmd.Flags().StringVar(&root, "root", "/", "the node's root folder (tests, images)")
	return cmd
}

func nodeImportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "import N.req",
		Short: "On the CA host: check a node's request against the site and record it",
		Long: `Checks a node's request: the right site, a node of it, a well-formed
WireGuard public key not used by another node, exactly one CSR per service of
the node, each with a valid self-signature, for the service's server_name and
nothing else, with an accepted key type, and an Ed25519 SSH host public key.
Records it in the state folder (nodes/N/) and the audit log. From then on the
node's bundles carry certificates for its own keys and no private key.`,
		Example: `  ztwizard node import -c site.yaml web.req
  ztwizard bundle -c site.yaml --node web --out web.ztb`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("%s takes one request file", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usagef("%s: %v", args[0], unwrapPath(err))
			}
			req, err := bundle.ParseRequest(data)
			if err != nil {
				return usagef("%s: %v", args[0], err)
			}
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error {
				if _, err := bundle.Check(site, req); err != nil {
					return usagef("%s: %v", args[0], err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			defer s.close()
			c, err := s.auth.ImportRequest(req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s\n", authority.RequestSummary(c))
			return nil
		},
	}
}

func bundleCmd(g *globals) *cobra.Command {
	var node, out, cloudInit, binURL, binSum string
	var all bool
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "On the CA host: everything a node needs, signed by the CA, with a serial",
		Long: `Writes node N's bundle: the site file and the node's share of the secrets
(its server certificates, its SSH host certificate when its host key is
known, the CA certificate, CRL and KRL, the SSH CAs' public keys, the public
keys of the node and its WireGuard peers, every node's mesh address), with a
serial that only grows, signed by the site's CA. Nothing of another node's
private keys, nothing of the CAs' private keys.

A node that imported a request (` + "`ztwizard node import`" + `) holds its own keys: its
bundle carries no private key and is written 0644. Otherwise (the default,
as for images and seeds) the node's keys are made here and travel inside the
bundle, which is then written 0600.

On the node: ` + "`ztwizard apply --bundle N.ztb --ca-fingerprint FP`" + `.

With --cloud-init FILE it also writes #cloud-config user-data for a
provider's new VPS that takes user-data but no seed ISO: on the first boot,
before sshd starts (cloud-init's bootcmd), it installs those of the
packages the node's plan needs that dpkg lacks (no apt when none is
missing), fetches ztwizard with python3 from --ztwizard-url (where you serve
this very binary; its SHA-256 is pinned and checked before it runs,
--ztwizard-sha256 to pin another; https or http: the pin gives integrity,
https only hides which file is fetched) and applies the bundle with
--no-confirm. The bundle rides in
write_files and is read from cloud-init's copy of the user-data, never from a
command line or a log. The node's keys are made here, so the user-data holds
them: it is written 0600; the provider's metadata service keeps a copy.`,
		Example: `  ztwizard bundle -c site.yaml --node web --out web.ztb
  ztwizard bundle -c site.yaml --all --out ./bundles
  ztwizard bundle -c site.yaml --node web --out web.ztb --cloud-init web-user-data.yaml \
      --ztwizard-url https://files.example.com/ztwizard`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" || (node == "") == !all {
				return usagef("give --node N or --all, and --out")
			}
			var in bundle.Install
			if cloudInit != "" {
				if all {
					return usagef("--cloud-init goes with --node, not --all")
				}
				if binURL == "" {
					return usagef("--cloud-init needs --ztwizard-url: where the new VPS fetches ztwizard from")
				}
				in = bundle.Install{URL: binURL, SHA256: strings.ToLower(binSum)}
				if in.SHA256 == "" {
					var err error
					if in.SHA256, err = selfSHA256(); err != nil {
						return err
					}
				}
				if _, err := bundle.UserData(&bundle.Payload{CAFingerprint: "SHA256:" + strings.Repeat("0", 64)}, nil, nil, in); err != nil {
					return usageError{err}
				}
			} else if binURL != "" || binSum != "" {
				return usagef("--ztwizard-url and --ztwizard-sha256 go with --cloud-init")
			}
			s, err := open(cmd.Context(), g, true, func(site *steps.Site) error {
				if all {
					return nil
				}
				return authority.CheckNode(site, node)
			})
			if err != nil {
				return err
			}
			defer s.close()
			w := cmd.OutOrStdout()
			if all {
				if err := os.MkdirAll(out, 0o700); err != nil {
					return usagef("--out %s: %v", out, unwrapPath(err))
				}
				nodes := make([]string, 0, len(s.site.Nodes))
				for _, n := range s.site.Nodes {
					nodes = append(nodes, n.Name)
				}
				return s.auth.BundleAll(nodes, func(data []byte, p *bundle.Payload) error {
					return saveBundle(w, filepath.Join(out, p.Node+".ztb"), data, p)
				})
			}
			if cloudInit != "" {
				if err := s.auth.KeysHere(node); err != nil {
					return usagef("--cloud-init: a new VPS has no keys of its own yet: %v", err)
				}
			}
			data, p, err := s.auth.Bundle(node)
			if err != nil {
				return err
			}
			if err := saveBundle(w, out, data, p); err != nil {
				return err
			}
			if cloudInit != "" {
				return writeUserData(w, p, data, in, cloudInit, g.now())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&node, "node", "", "the node to bundle")
	cmd.Flags().BoolVar(&all, "all", false, "bundle every node of the site into the folder --out (N.ztb each)")
	cmd.Flags().StringVar(&out, "out", "", "the bundle file (N.ztb), or the folder with --all")
	cmd.Flags().StringVar(&cloudInit, "cloud-init", "", "also write #cloud-config user-data that installs ztwizard and applies the bundle on a new VPS's first boot")
	cmd.Flags().StringVar(&binURL, "ztwizard-url", "", "with --cloud-init: the https (or http) URL the VPS fetches the ztwizard binary from")
	cmd.Flags().StringVar(&binSum, "ztwizard-sha256", "", "with --cloud-init: the binary's SHA-256 (default: this binary's)")
	return cmd
}

// saveBundle writes a bundle to file: 0600 when it carries private keys,
// else 0644.
func saveBundle(w io.Writer, file string, data []byte, p *bundle.Payload) error {
	mode, what := os.FileMode(0o644), "public material only"
	if p.PrivateKeys {
		mode, what = 0o600, "with the node's private keys: keep it secret"
	}
	if err := atomicfile.WriteFile(file, data, mode); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote the bundle of node %s to %s: serial %d, CA %s, %s\n", p.Node, file, p.Serial, p.CAFingerprint, what)
	return nil
}

// writeUserData writes the cloud-init user-data that applies a bundle on a
// new VPS's first boot, with the packages its plan needs.
func writeUserData(w io.Writer, p *bundle.Payload, data []byte, in bundle.Install, file string, now time.Time) error {
	plan, err := p.Plan(os.DevNull, now)
	if err != nil {
		return err
	}
	packages := []string{"nftables", "openssh-server"}
	for _, u := range plan.Units {
		if u.Package != "" && !slices.Contains(packages, u.Package) {
			packages = append(packages, u.Package)
		}
	}
	ud, err := bundle.UserData(p, data, packages, in)
	if err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if p.PrivateKeys {
		mode = 0o600
	}
	if err := atomicfile.WriteFile(file, ud, mode); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote cloud-init user-data for node %s to %s (packages %s)\n", p.Node, file, strings.Join(packages, " "))
	return nil
}

// selfSHA256 is the SHA-256 of this binary, hex.
func selfSHA256() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	f, err := os.Open(self)
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func caFingerprintCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "fingerprint",
		Short: "Print the CA certificate's SHA-256 fingerprint, for a node's first bundle",
		Long: `Prints SHA256: and the 64 hex digits of the SHA-256 of the CA certificate's
DER encoding (the digits ` + "`openssl x509 -noout -fingerprint -sha256`" + ` prints, without
its colons). A node checks its first bundle against it
(` + "`apply --bundle N.ztb --ca-fingerprint FP`" + `); later ones against the CA it then
trusts. Needs no site file and no passphrase.`,
		Example: `  ztwizard ca fingerprint`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := stateDir(g)
			if err != nil {
				return err
			}
			if _, err := os.Stat(dir); err != nil {
				return usagef("no state at %s yet: run `ztwizard ca init` first, or pass --state", dir)
			}
			store, err := state.Open(dir)
			if err != nil {
				return err
			}
			data, err := store.ReadFile(authority.CACertFile)
			if errors.Is(err, os.ErrNotExist) {
				return usagef("no CA in %s yet: run `ztwizard ca init`", dir)
			}
			if err != nil {
				return err
			}
			cert, err := pki.DecodeCertPEM(data)
			if err != nil {
				return fmt.Errorf("%s: %w", store.Path(authority.CACertFile), err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), bundle.Fingerprint(cert))
			return nil
		},
	}
}

// prepareBundle is prepare for --bundle: it needs no site and no CA, only
// this node's state folder (its journal, the CA it trusts, the serial of
// the last bundle applied). It checks the bundle before anything is
// touched; a refused bundle is bad input.
func prepareBundle(cmd *cobra.Command, g *globals, f *applyFlags) (*session, *steps.Plan, *host.Applier, func(), error) {
	fail := func(err error) (*session, *steps.Plan, *host.Applier, func(), error) {
		return nil, nil, nil, nil, err
	}
	if cmd.Flags().Changed("config") {
		return fail(usagef("--bundle carries the site: give no -c"))
	}
	live := filepath.Clean(f.root) == "/"
	if live && os.Geteuid() != 0 {
		return fail(usagef("applying to this host needs root; use --root DIR to write the files into a folder"))
	}
	var fp string
	if f.caFingerprint != "" {
		var err error
		if fp, err = bundle.ParseFingerprint(f.caFingerprint); err != nil {
			return fail(usagef("--ca-fingerprint: %v", err))
		}
	}
	data, err := os.ReadFile(f.bundle)
	if err != nil {
		return fail(usagef("--bundle %s: %v", f.bundle, unwrapPath(err)))
	}
	// cloud-init user-data made by `bundle --cloud-init` carries one.
	if inner, ok, err := bundle.FromUserData(data); ok {
		if err != nil {
			return fail(usageError{fmt.Errorf("--bundle %s: %w", f.bundle, err)})
		}
		data = inner
	}
	dir, err := stateDir(g)
	if err != nil {
		return fail(err)
	}
	s, err := openStore(cmd.Context(), g, dir)
	if err != nil {
		return fail(err)
	}
	store, err := state.Open(dir)
	if err != nil {
		s.close()
		return fail(err)
	}
	failS := func(err error) (*session, *steps.Plan, *host.Applier, func(), error) {
		s.close()
		if errors.Is(err, bundle.ErrRefused) {
			err = usageError{fmt.Errorf("--bundle %s: %w", f.bundle, err)}
		}
		return nil, nil, nil, nil, err
	}
	held, err := bundle.LoadHeld(store)
	if err != nil {
		return failS(err)
	}
	trust, err := bundle.TrustFor(held, fp)
	if err != nil {
		return failS(err)
	}
	if f.node != "" {
		if trust.Node != "" && trust.Node != f.node {
			return failS(usagef("--node %s: this host applied bundles of node %q", f.node, trust.Node))
		}
		trust.Node = f.node
	}
	now := g.now()
	p, err := bundle.Open(data, trust, now)
	if err != nil {
		return failS(err)
	}
	plan, err := p.Plan(f.root, now)
	if err != nil {
		return failS(err)
	}
	s.applied = func() error { return bundle.SaveHeld(store, p, g.now()) }
	jdir, err := journalDir(dir, f.root)
	if err != nil {
		return failS(err)
	}
	if !live {
		return s, plan, host.NewFiles(f.root, jdir), func() {}, nil
	}
	a, closeFn, err := liveApplier(dir)
	if err != nil {
		return failS(err)
	}
	return s, plan, a, closeFn, nil
}

// printHeld tells what this node holds from its CA host: the last bundle
// applied and when each piece of it runs out.
func printHeld(w io.Writer, store *state.Store, now time.Time) (bool, error) {
	h, err := bundle.LoadHeld(store)
	if err != nil || h == nil {
		return false, err
	}
	fmt.Fprintf(w, "node %s of site %s: bundle serial %d applied %s, CA %s\n", h.Node, h.Site, h.Serial,
		h.Applied.UTC().Format(time.RFC3339), h.CAFingerprint)
	for _, e := range h.Expiries {
		mark := "  "
		if monitor.HeldItem(e, h.Node, now).Due {
			mark = "WARN "
		}
		fmt.Fprintf(w, "%s%-28s %s  %s\n", mark, e.What, e.NotAfter.UTC().Format(time.RFC3339), left(e.NotAfter.Sub(now)))
	}
	return true, nil
}

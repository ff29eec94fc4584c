package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"ztwizard/steps"
	"ztwizard/steps/atomicfile"
	"ztwizard/steps/authority"
)

func caScheduleCmd(g *globals) *cobra.Command {
	var root string
	var noEnable bool
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Let the CA host re-sign the CRL on schedule, its key staying encrypted",
		Long: `Sets up the CA host to re-sign the CRL when it is due with no one there:
writes ` + steps.CACRLUnit + ` and ` + steps.CACRLTimer + ` and enables the timer, and
the status timer that writes every certificate's expiry from the index as
node_exporter metrics (` + steps.TextfilePath + `). With an
encrypted CA key, the passphrase (checked against the key first) is encrypted
with systemd-creds into ` + steps.PassphraseCredentialPath + `
(bound to this host's credential secret, or its TPM) and the service loads it
with LoadCredentialEncrypted=: systemd decrypts it into the service's private
credentials folder while it runs, so no clear-text passphrase is on disk.
Where systemd-creds is missing, it prints the command to run on the CA host.
` + "`ztwizard status`" + ` warns until this is done.`,
		Example: `  ztwizard ca schedule -c /root/site.yaml --passphrase-file /root/ca.pass
  shred -u /root/ca.pass     # the credential replaces it`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sitePath, err := filepath.Abs(g.site)
			if err != nil {
				return usagef("-c %s: %v", g.site, err)
			}
			stateAbs, err := stateDir(g)
			if err != nil {
				return err
			}
			if stateAbs, err = filepath.Abs(stateAbs); err != nil {
				return usagef("--state: %v", err)
			}
			s, err := open(cmd.Context(), g, true, nil)
			if err != nil {
				return err
			}
			defer s.close()
			if ok, err := s.auth.Store.Exists(authority.CACertFile); err != nil {
				return err
			} else if !ok {
				return usagef("no CA in %s: schedule the CRL where the CA lives (see `ztwizard ca init`)", s.auth.Store.Dir())
			}
			// The passphrase must open the key now, not at 3 a.m.
			if _, _, err := s.auth.CA(); err != nil {
				return err
			}
			key, err := s.auth.Store.ReadFile(authority.CAKeyFile)
			if err != nil {
				return err
			}
			b, _ := pem.Decode(key)
			encrypted := b != nil && b.Type == "ENCRYPTED PRIVATE KEY"
			// Also a node (it has a CRL of the site installed): the CA's
			// service keeps that one fresh too.
			_, err = os.Stat(filepath.Join(root, steps.CRLPath))
			files, err := steps.CAHostUnits(s.site, sitePath, stateAbs, encrypted, err == nil)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, f := range files {
				p := filepath.Join(root, f.Path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return fmt.Errorf("schedule: %w", err)
				}
				if err := atomicfile.WriteFile(p, f.Content, f.Mode); err != nil {
					return fmt.Errorf("schedule: %w", err)
				}
				fmt.Fprintf(w, "wrote %s\n", p)
			}
			if encrypted {
				pass, err := passphrase(g)
				if err != nil {
					return err
				}
				if err := encryptCredential(w, root, pass); err != nil {
					return err
				}
			}
			if noEnable {
				return nil
			}
			for _, timer := range []string{steps.CACRLTimer, steps.StatusTimer} {
				if err := enableTimer(w, root, timer); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "/", "write the units and the credential under this folder instead of /")
	cmd.Flags().BoolVar(&noEnable, "no-enable", false, "write the files only; do not enable the timer")
	return cmd
}

// encryptCredential encrypts the passphrase with systemd-creds into the
// credential store under root, atomically (a temporary file in the same
// folder, renamed). Without systemd-creds it says what to run.
func encryptCredential(w io.Writer, root string, pass []byte) error {
	dst := filepath.Join(root, steps.PassphraseCredentialPath)
	bin, err := exec.LookPath("systemd-creds")
	if err != nil {
		fmt.Fprintf(w, "systemd-creds is not installed here: on the CA host (systemd 250 or later) run\n"+
			"  install -d -m 0700 %s\n  systemd-creds encrypt --name=%s PASSPHRASE-FILE %s\n",
			steps.CredStoreDir, steps.PassphraseCredential, steps.PassphraseCredentialPath)
		return nil
	}
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	tmp := filepath.Join(dir, atomicfile.TempPrefix+steps.PassphraseCredential+atomicfile.TempSuffix)
	os.Remove(tmp)
	c := exec.Command(bin, "encrypt", "--name="+steps.PassphraseCredential, "-", tmp)
	c.Stdin = bytes.NewReader(append(bytes.Clone(pass), '\n'))
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("schedule: systemd-creds encrypt: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("schedule: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("schedule: %w", err)
	}
	fmt.Fprintf(w, "wrote %s (the passphrase, encrypted by systemd-creds)\n", dst)
	return nil
}

// enableTimer enables unit: on a running systemd also starts it; under
// another root (or where systemd is not PID 1) it makes the links offline.
func enableTimer(w io.Writer, root, unit string) error {
	bin, err := exec.LookPath("systemctl")
	if err != nil {
		fmt.Fprintf(w, "systemctl is not installed here: run `systemctl daemon-reload && systemctl enable --now %s` on the CA host\n", unit)
		return nil
	}
	var runs [][]string
	if filepath.Clean(root) == "/" && isDir("/run/systemd/system") {
		runs = [][]string{{"daemon-reload"}, {"enable", "--now", unit}}
	} else {
		runs = [][]string{{"--root=" + root, "enable", unit}}
	}
	for _, args := range runs {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("schedule: systemctl %v: %w: %s", args, err, bytes.TrimSpace(out))
		}
	}
	fmt.Fprintf(w, "enabled %s\n", unit)
	return nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

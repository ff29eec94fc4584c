package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/google/nftables"

	"ztwizard/steps/nft"
)

// firewall is the host's nftables, as far as ztwizard touches it: its own
// table, read as text, replaced in one batch, restored from text.
type firewall interface {
	Current(ctx context.Context) (text string, exists bool, err error)
	Replace(ctx context.Context, t *nft.Table) error
	Restore(ctx context.Context, text string, existed bool) error
	// Generation and Fingerprint are nft.Generation and nft.Fingerprint.
	Generation(ctx context.Context) (uint32, error)
	Fingerprint(ctx context.Context) (string, error)
}

// kernelFirewall talks to the kernel of the current network namespace:
// netlink for the replacement, the nft program to read and restore text.
type kernelFirewall struct{ run runner }

// Current lists the inet ztwizard table as nft prints it. Whether there is
// one is asked over netlink first: a host without it (every first apply)
// starts no nft.
func (k kernelFirewall) Current(ctx context.Context) (string, bool, error) {
	if c, err := nftables.New(); err == nil {
		if exists, err := nft.TableExists(c); err == nil && !exists {
			return "", false, nil
		}
	}
	out, err := k.run.Run(ctx, nil, "nft", "list", "table", nft.Family, nft.TableName)
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return "", false, nil
		}
		return "", false, fmt.Errorf("firewall: list table: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), true, nil
}

// Replace sends the table in one netlink batch; other tables are untouched.
func (k kernelFirewall) Replace(_ context.Context, t *nft.Table) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("firewall: netlink: %w", err)
	}
	return t.Apply(c)
}

// Generation reads the ruleset generation (see nft.Generation).
func (k kernelFirewall) Generation(context.Context) (uint32, error) {
	c, err := nftables.New()
	if err != nil {
		return 0, fmt.Errorf("firewall: netlink: %w", err)
	}
	return nft.Generation(c)
}

// Fingerprint digests the table as the kernel holds it (see
// nft.Fingerprint).
func (k kernelFirewall) Fingerprint(context.Context) (string, error) {
	c, err := nftables.New()
	if err != nil {
		return "", fmt.Errorf("firewall: netlink: %w", err)
	}
	return nft.Fingerprint(c)
}

// firewallMark ties the table a plan wants to the fingerprint of the
// kernel's table once it was that: "SHA256-OF-TEXT FINGERPRINT". The
// manifest keeps it, and while the kernel's table keeps that fingerprint
// it is still the plan's, with no need to list it as text (starting nft).
func firewallMark(t *nft.Table, fingerprint string) string {
	if fingerprint == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(t.Text()))
	return hex.EncodeToString(sum[:]) + " " + fingerprint
}

// markAt is the mark of t for the kernel's table, provided the ruleset
// is at generation gen before and after it is read: then the table is the
// one that generation made (t, as the caller knows). "" when anything
// else committed since, or on any error: the next apply lists the table.
func (a *Applier) markAt(ctx context.Context, t *nft.Table, gen uint32) string {
	if g, err := a.Firewall.Generation(ctx); err != nil || g != gen {
		return ""
	}
	fp, err := a.Firewall.Fingerprint(ctx)
	if err != nil {
		return ""
	}
	if g, err := a.Firewall.Generation(ctx); err != nil || g != gen {
		return ""
	}
	return firewallMark(t, fp)
}

// Restore puts back the table as it was: its text, or no table.
func (k kernelFirewall) Restore(ctx context.Context, text string, existed bool) error {
	if !existed {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("firewall: netlink: %w", err)
		}
		return nft.Delete(c)
	}
	script := fmt.Sprintf("table %[1]s %[2]s\ndelete table %[1]s %[2]s\n%[3]s", nft.Family, nft.TableName, text)
	if out, err := k.run.Run(ctx, []byte(script), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("firewall: restore: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

package host

import (
	"context"
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
}

// kernelFirewall talks to the kernel of the current network namespace:
// netlink for the replacement, the nft program to read and restore text.
type kernelFirewall struct{ run runner }

// Current lists the inet ztwizard table as nft prints it.
func (k kernelFirewall) Current(ctx context.Context) (string, bool, error) {
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

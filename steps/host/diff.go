package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aymanbagabas/go-udiff"

	"ztwizard/steps"
)

// Diff shows what Apply would change, touching nothing: a unified diff of
// every file (secret ones named, not shown), of the firewall as nft text,
// and the WireGuard interface's peers added, removed and changed. It is ""
// when the host already matches the plan.
func (a *Applier) Diff(ctx context.Context, p *steps.Plan) (string, error) {
	c, err := a.diff(ctx, p)
	if err != nil {
		return "", fmt.Errorf("plan: %w", err)
	}
	var b strings.Builder
	for _, f := range c.write {
		old, err := os.ReadFile(filepath.Join(a.Root, f.Path))
		exists := err == nil
		if err != nil && !os.IsNotExist(err) {
			return "", fmt.Errorf("plan: %w", err)
		}
		switch {
		case secret(f):
			verb := "changed"
			if !exists {
				verb = "new"
			}
			fmt.Fprintf(&b, "--- %s\n+++ %s\n@@ secret (mode %04o): %s, content not shown @@\n", f.Path, f.Path, f.Mode, verb)
		case binary(f.Content) || exists && binary(old):
			verb := "changed"
			switch {
			case !exists:
				verb = "new"
			case string(old) == string(f.Content):
				verb = "unchanged content, mode or owner"
			}
			sum := sha256.Sum256(f.Content)
			fmt.Fprintf(&b, "--- %s\n+++ %s\n@@ binary (mode %04o): %s, %d bytes, sha256 %x @@\n", f.Path, f.Path, f.Mode, verb, len(f.Content), sum[:8])
		case exists && string(old) == string(f.Content):
			fmt.Fprintf(&b, "--- %s\n+++ %s\n@@ mode or owner: %04o %s:%s @@\n", f.Path, f.Path, f.Mode, or(f.Owner, "root"), or(f.Group, "root"))
		default:
			from := f.Path
			if !exists {
				from = "/dev/null"
			}
			b.WriteString(udiff.Unified(from, f.Path, string(old), string(f.Content)))
		}
	}
	for _, path := range c.remove {
		fmt.Fprintf(&b, "--- %s\n+++ /dev/null\n@@ removed: the site no longer needs it @@\n", path)
	}
	if c.fw {
		from := "nft: table inet ztwizard (now)"
		if !c.fwNow.Existed {
			from = "/dev/null"
		}
		b.WriteString(udiff.Unified(from, "nft: table inet ztwizard (plan)", c.fwNow.Text, p.Firewall.Text()))
	}
	if c.wg {
		b.WriteString(wgDiff(c.wgNow, c.wgWant))
	}
	if a.Live {
		// What apply then does to the daemons (those running, at apply).
		for _, act := range serviceActions(p, c.paths()) {
			fmt.Fprintf(&b, "@@ service: %s @@\n", act)
		}
	}
	return b.String(), nil
}

// secret tells whether a file holds a private key: never printed.
// binary tells content that is no text (a KRL), which a line diff would
// show as garbage.
func binary(content []byte) bool {
	return !utf8.Valid(content) || bytes.IndexByte(content, 0) >= 0
}

func secret(f steps.File) bool {
	return f.Mode&0o077 == 0 && (strings.HasSuffix(f.Path, ".key") || strings.Contains(f.Path, "/wireguard/"))
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// wgDiff lists how the interface changes, one line a difference.
func wgDiff(now, want *WGSnapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "wireguard %s:\n", want.Name)
	if !now.Existed {
		fmt.Fprintf(&b, "  + interface (listen port %d, addresses %s)\n", want.ListenPort, strings.Join(want.Addresses, ", "))
	} else {
		if now.ListenPort != want.ListenPort {
			fmt.Fprintf(&b, "  ~ listen port %d -> %d\n", now.ListenPort, want.ListenPort)
		}
		if now.PrivateKey != want.PrivateKey {
			b.WriteString("  ~ private key (not shown)\n")
		}
		if !slices.Equal(sorted(now.Addresses), sorted(want.Addresses)) {
			fmt.Fprintf(&b, "  ~ addresses %s -> %s\n", strings.Join(now.Addresses, ", "), strings.Join(want.Addresses, ", "))
		}
	}
	had := map[string]WGPeer{}
	for _, p := range now.Peers {
		had[p.PublicKey] = p
	}
	for _, p := range want.Peers {
		old, ok := had[p.PublicKey]
		delete(had, p.PublicKey)
		switch {
		case !ok:
			fmt.Fprintf(&b, "  + peer %s allowed %s endpoint %s\n", p.PublicKey, strings.Join(p.AllowedIPs, ","), or(p.Endpoint, "none"))
		case !samePeer(old, p):
			fmt.Fprintf(&b, "  ~ peer %s allowed %s endpoint %s keepalive %ds\n", p.PublicKey, strings.Join(p.AllowedIPs, ","), or(p.Endpoint, "none"), p.Keepalive)
		}
	}
	gone := make([]string, 0, len(had))
	for k := range had {
		gone = append(gone, k)
	}
	slices.Sort(gone)
	for _, k := range gone {
		fmt.Fprintf(&b, "  - peer %s\n", k)
	}
	return b.String()
}

// samePeer tells whether peer now is as the plan wants it. A peer the plan
// gives no endpoint keeps whatever endpoint it roamed to.
func samePeer(now, want WGPeer) bool {
	return now.PresharedKey == want.PresharedKey && (want.Endpoint == "" || now.Endpoint == want.Endpoint) &&
		now.Keepalive == want.Keepalive && slices.Equal(now.AllowedIPs, want.AllowedIPs)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

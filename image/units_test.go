package image

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestEnableUnits(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "lib/systemd/system")
	writeFile(t, filepath.Join(lib, "a.service"), "[Unit]\nDescription=a\n\n[Install]\nWantedBy=multi-user.target\nAlias=a-alias.service\nAlso=a.socket\n", 0o644)
	writeFile(t, filepath.Join(lib, "a.socket"), "[Install]\nWantedBy=sockets.target\n", 0o644)
	writeFile(t, filepath.Join(lib, "wg-quick@.service"), "[Install]\nWantedBy=multi-user.target\n", 0o644)
	writeFile(t, filepath.Join(lib, "getty@.service"), "[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n", 0o644)
	writeFile(t, filepath.Join(lib, "static.service"), "[Service]\nExecStart=/bin/true\n", 0o644)
	writeFile(t, filepath.Join(lib, "req.service"), "[Install]\nRequiredBy=sysinit.target\n", 0o644)
	writeFile(t, filepath.Join(root, "etc/systemd/system/mine.timer"), "[Install]\nWantedBy=timers.target\n", 0o644)
	// An absolute symlink must resolve inside the root, not on this host.
	if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/systemd/system/a.service", filepath.Join(root, "etc/systemd/system/sshd-like.service")); err != nil {
		t.Fatal(err)
	}

	missing, err := EnableUnits(root, []string{"a.service", "wg-quick@zt0.service", "getty@.service", "static.service", "req.service", "mine.timer", "sshd-like.service", "nope.service"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(missing, []string{"nope.service"}) {
		t.Fatalf("missing %v", missing)
	}
	want := map[string]string{
		"etc/systemd/system/multi-user.target.wants/a.service":            "/lib/systemd/system/a.service",
		"etc/systemd/system/a-alias.service":                              "/lib/systemd/system/a.service",
		"etc/systemd/system/sockets.target.wants/a.socket":                "/lib/systemd/system/a.socket",
		"etc/systemd/system/multi-user.target.wants/wg-quick@zt0.service": "/lib/systemd/system/wg-quick@.service",
		"etc/systemd/system/getty.target.wants/getty@tty1.service":        "/lib/systemd/system/getty@.service",
		"etc/systemd/system/sysinit.target.requires/req.service":          "/lib/systemd/system/req.service",
		"etc/systemd/system/timers.target.wants/mine.timer":               "/etc/systemd/system/mine.timer",
		"etc/systemd/system/multi-user.target.wants/sshd-like.service":    "/lib/systemd/system/a.service",
	}
	for link, target := range want {
		got, err := os.Readlink(filepath.Join(root, link))
		if err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %s", link, got, err, target)
		}
	}
	// Enabling again changes nothing and fails on nothing.
	if _, err := EnableUnits(root, []string{"a.service"}); err != nil {
		t.Fatal(err)
	}

	if err := MaskUnit(root, "static.service"); err != nil {
		t.Fatal(err)
	}
	if _, err := EnableUnits(root, []string{"static.service"}); err == nil || !strings.Contains(err.Error(), "masked") {
		t.Fatalf("enabling a masked unit: %v", err)
	}
	writeFile(t, filepath.Join(lib, "tmpl@.service"), "[Install]\nWantedBy=multi-user.target\n", 0o644)
	if _, err := EnableUnits(root, []string{"tmpl@.service"}); err == nil || !strings.Contains(err.Error(), "needs an instance") {
		t.Fatalf("enabling a template without an instance: %v", err)
	}
}

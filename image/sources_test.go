package image

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAptSources(t *testing.T) {
	const osRelease = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\n"
	const deb822 = `Types: deb
# a comment
URIs: http://archive.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://disabled.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm
Components: main
`
	const oneLine = "# deb http://commented.invalid/debian bookworm main\n" +
		"deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main contrib\n" +
		"deb http://other.invalid/debian sid main\n"
	tests := []struct {
		name   string
		files  map[string]string
		suite  string
		mirror string
		want   []string
		err    string
	}{
		{
			name:  "deb822",
			files: map[string]string{"etc/os-release": osRelease, "etc/apt/sources.list.d/debian.sources": deb822},
			suite: "bookworm",
			want: []string{"deb http://archive.invalid/debian bookworm main", "deb http://archive.invalid/debian bookworm-updates main",
				"deb http://security.invalid/debian-security bookworm-security main"},
		},
		{
			name:  "another suite",
			files: map[string]string{"etc/os-release": osRelease, "etc/apt/sources.list.d/debian.sources": deb822},
			suite: "trixie",
			want: []string{"deb http://archive.invalid/debian trixie main", "deb http://archive.invalid/debian trixie-updates main",
				"deb http://security.invalid/debian-security trixie-security main"},
		},
		{
			name:  "one-line with options",
			files: map[string]string{"etc/os-release": osRelease, "etc/apt/sources.list": oneLine},
			suite: "bookworm",
			want:  []string{"deb http://mirror.invalid/debian bookworm main"},
		},
		{
			name:   "mirror",
			files:  map[string]string{},
			suite:  "bookworm",
			mirror: "http://local.invalid/debian",
			want:   []string{"deb http://local.invalid/debian bookworm main"},
		},
		{name: "mirror not a URL", suite: "bookworm", mirror: "local.invalid", err: "want a URL"},
		{name: "no codename", files: map[string]string{"etc/apt/sources.list": oneLine}, suite: "bookworm", err: "VERSION_CODENAME"},
		{name: "no archive", files: map[string]string{"etc/os-release": osRelease, "etc/apt/sources.list": "deb http://x.invalid/debian sid main\n"}, suite: "bookworm", err: "pass --mirror"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tt.files {
				writeFile(t, filepath.Join(root, p), c, 0o644)
			}
			got, err := AptSources(root, tt.suite, tt.mirror)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestRootfsKey(t *testing.T) {
	base := RootfsSpec{Suite: "bookworm", Sources: []string{"deb http://a.invalid/debian bookworm main"}, Packages: []string{"nginx", "systemd"}}
	same := base
	same.Packages = []string{"systemd", "nginx", "nginx"}
	same.Cache = "/elsewhere"
	if base.Key() != same.Key() {
		t.Fatal("the key depends on package order, repeats or the cache folder")
	}
	for _, other := range []RootfsSpec{
		{Suite: "trixie", Sources: base.Sources, Packages: base.Packages},
		{Suite: "bookworm", Sources: []string{"deb http://b.invalid/debian bookworm main"}, Packages: base.Packages},
		{Suite: "bookworm", Sources: base.Sources, Packages: []string{"nginx", "systemd", "cloud-init"}},
	} {
		if other.Key() == base.Key() {
			t.Fatalf("%+v has the same key as %+v", other, base)
		}
	}
	if (RootfsSpec{Sources: base.Sources, Packages: base.Packages}).Key() != base.Key() {
		t.Fatal("an empty suite is not the default suite")
	}
}

func TestRootfsCacheHit(t *testing.T) {
	cache := t.TempDir()
	spec := RootfsSpec{Suite: "bookworm", Sources: []string{"deb http://a.invalid/debian bookworm main"}, Packages: []string{"systemd"}, Cache: cache}
	base := filepath.Join(cache, "rootfs-bookworm-"+spec.Key())
	writeFile(t, base+".tar", "not really a tarball", 0o644)
	writeFile(t, base+".json", `{"key":"`+spec.Key()+`","suite":"bookworm","epoch":1700000000}`, 0o644)
	info, err := Rootfs(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Hit || info.Epoch != 1700000000 || info.Tar != base+".tar" {
		t.Fatalf("info %+v", info)
	}
}

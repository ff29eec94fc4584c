package image

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"ztwizard/steps"
	"ztwizard/steps/pki"
)

func fileAt(c *Content, p string) (steps.File, bool) {
	i := slices.IndexFunc(c.Files, func(f steps.File) bool { return f.Path == p })
	if i < 0 {
		return steps.File{}, false
	}
	return c.Files[i], true
}

func TestGoldenContentHoldsNoSecret(t *testing.T) {
	a := exampleAuthority(t)
	sec, err := a.Secrets("db") // everything, private parts included: GoldenContent must drop them
	if err != nil {
		t.Fatal(err)
	}
	c, err := GoldenContent(a.Site, sec)
	if err != nil {
		t.Fatal(err)
	}
	if c.Node != "" || c.Hostname != GoldenHostname {
		t.Fatalf("golden content is node %q host %q", c.Node, c.Hostname)
	}
	for _, f := range c.Files {
		if keys := pemPrivateKeys(f.Content); len(keys) > 0 {
			t.Errorf("%s holds %v", f.Path, keys)
		}
		if len(wireGuardSecrets(f.Content)) > 0 || strings.Contains(string(f.Content), sec.WireGuardKey.String()) {
			t.Errorf("%s holds a WireGuard secret", f.Path)
		}
		if strings.HasPrefix(f.Path, steps.TLSDir) || strings.HasPrefix(f.Path, steps.WireGuardConfDir) || f.Path == steps.SSHHostKeyPath {
			t.Errorf("golden content has %s", f.Path)
		}
	}
	for _, p := range []string{steps.SiteFilePath, steps.CACertPath, steps.NftablesPath, steps.SSHDropInPath, steps.SSHUserCAPath,
		steps.SSHKRLPath, steps.SSHKnownHostsPath, steps.SystemdDir + "/" + steps.FirewallUnit, steps.SystemdDir + "/" + steps.FirstBootUnit, "/etc/hostname"} {
		if _, ok := fileAt(c, p); !ok {
			t.Errorf("golden content lacks %s", p)
		}
	}
	fw, _ := fileAt(c, steps.NftablesPath)
	if !bytes.Contains(fw.Content, []byte("policy drop")) || bytes.Contains(fw.Content, []byte(steps.SetDBClients)) {
		t.Errorf("golden firewall: want policy drop and no database clients:\n%s", fw.Content)
	}
	known, _ := fileAt(c, steps.SSHKnownHostsPath)
	if bytes.Contains(known.Content, []byte("golden")) || !bytes.Contains(known.Content, []byte("db,")) {
		t.Errorf("known_hosts names the site's nodes only:\n%s", known.Content)
	}
	ca, _ := fileAt(c, steps.CACertPath)
	if _, err := pki.DecodeCertPEM(ca.Content); err != nil {
		t.Errorf("CA certificate: %v", err)
	}
	if !slices.Contains(c.Enable, steps.FirewallUnit) || slices.Contains(c.Enable, WireGuardUnit) {
		t.Errorf("golden units %v: want the firewall, not the mesh", c.Enable)
	}
}

func TestNodeContent(t *testing.T) {
	a := exampleAuthority(t)
	plan, hk := examplePlan(t, a, "db")
	c, err := NodeContent(plan, hk, Network{Address: "192.168.1.100/24", Gateway: "192.168.1.1", DNS: []string{"192.168.1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	key, ok := fileAt(c, steps.SSHHostKeyPath)
	if !ok || key.Mode != 0o600 || !bytes.Equal(key.Content, hk.Private) {
		t.Fatalf("host key: %+v", key)
	}
	if f, _ := fileAt(c, steps.SSHHostCertPath); len(f.Content) == 0 {
		t.Fatal("no host certificate")
	}
	if f, _ := fileAt(c, NodeFilePath); string(f.Content) != "db\n" {
		t.Fatalf("node file %q", f.Content)
	}
	net, _ := fileAt(c, StaticNetworkPath)
	for _, want := range []string{"Address=192.168.1.100/24", "Gateway=192.168.1.1", "DNS=192.168.1.1"} {
		if !bytes.Contains(net.Content, []byte(want)) {
			t.Errorf("network file lacks %s:\n%s", want, net.Content)
		}
	}
	if !slices.Contains(c.Enable, WireGuardUnit) || !slices.Contains(c.Enable, steps.FirewallUnit) {
		t.Errorf("units %v", c.Enable)
	}
	if !slices.IsSortedFunc(c.Files, func(a, b steps.File) int { return strings.Compare(a.Path, b.Path) }) {
		t.Error("files are not sorted")
	}
}

func TestNetworkFiles(t *testing.T) {
	tests := []struct {
		name string
		net  Network
		want string // an error part, "" for none
	}{
		{"dhcp", Network{}, ""},
		{"static", Network{Address: "10.0.0.5/24"}, ""},
		{"v6", Network{Address: "fd00::5/64", Gateway: "fd00::1"}, ""},
		{"no prefix", Network{Address: "10.0.0.5"}, "prefix length"},
		{"gateway family", Network{Address: "10.0.0.5/24", Gateway: "fd00::1"}, "same family"},
		{"bad dns", Network{Address: "10.0.0.5/24", DNS: []string{"dns.example"}}, "not an IP address"},
		{"gateway alone", Network{Gateway: "10.0.0.1"}, "need --address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := NetworkFiles(tt.net)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			case tt.want == "" && (len(files) == 1) != (tt.net.Address != ""):
				t.Fatalf("files %v", files)
			}
		})
	}
}

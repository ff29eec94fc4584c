package steps

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestViewPlans: for every node of several sites, the plan built from the
// node's view of the site (what its bundle carries) is the plan built from
// the whole site, but for the site file and the host names of the
// @cert-authority line, which name exactly the nodes of the view. A
// view keeps only the nodes the node deals with, so its size does not grow
// with the site.
func TestViewPlans(t *testing.T) {
	admin := Example()
	admin.SSH.AdminNodes = []string{"web"}
	caHost := Example()
	caHost.CA.Host = "db"
	meshAll := Example()
	meshAll.SSH.MeshAccess = MeshSSHAll
	ring, _ := fwSite(t, fwShape{nodes: 40, peers: 2, servicesEvery: 5, services: 2, dbEvery: 4, dbClients: 2})
	ringAdmins, _ := fwSite(t, fwShape{nodes: 40, peers: 3, servicesEvery: 3, services: 1, dbEvery: 3, dbClients: 3, ipv6: true})
	ringAdmins.SSH.AdminNodes = []string{"n7"}
	ringAdmins.CA.Host = "n9"
	hub, _ := fwSite(t, fwShape{nodes: 30, peers: 29, hub: true, servicesEvery: 10, services: 1, dbEvery: 30, dbClients: 2})
	for _, tc := range []struct {
		name string
		site *Site
		// small: the view of a node that is no admin node, no CA host and
		// has at most this many nodes (0: no bound)
		small int
	}{
		{"example", Example(), 0},
		{"admin node", admin, 0},
		{"ca host", caHost, 0},
		{"mesh access all", meshAll, 0},
		{"ring", ring, 6},
		{"ring with admins", ringAdmins, 12},
		{"hub", hub, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.site.Validate(); err != nil {
				t.Fatal(err)
			}
			addrs, err := tc.site.Addresses(nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.site.Nodes {
				sec := fixedSecrets(t, tc.site, n.Name)
				full, err := BuildPlan(tc.site, n.Name, sec, goldenNow)
				if err != nil {
					t.Fatalf("%s: full site: %v", n.Name, err)
				}
				view, err := tc.site.ViewFor(n.Name, addrs)
				if err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
				data, err := view.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				parsed, err := Parse(data, "view")
				if err != nil {
					t.Fatalf("%s: the view does not load: %v", n.Name, err)
				}
				vsec := *sec
				vsec.Addresses = map[string]netip.Addr{}
				for _, vn := range parsed.Nodes {
					vsec.Addresses[vn.Name] = sec.Addresses[vn.Name]
				}
				got, err := BuildPlan(parsed, n.Name, &vsec, goldenNow)
				if err != nil {
					t.Fatalf("%s: view: %v", n.Name, err)
				}
				comparePlans(t, n.Name, parsed, full, got)
				if tc.small > 0 && len(parsed.Nodes) > tc.small && !slices.Contains(tc.site.SSH.AdminNodes, n.Name) && tc.site.CA.Host != n.Name {
					t.Errorf("%s: the view keeps %d nodes, want at most %d", n.Name, len(parsed.Nodes), tc.small)
				}
			}
		})
	}
}

// comparePlans compares the plan from the whole site (want) with the plan
// from the view (got).
func comparePlans(t *testing.T, node string, view *Site, want, got *Plan) {
	t.Helper()
	if !reflect.DeepEqual(want.Firewall, got.Firewall) {
		t.Errorf("%s: the firewall differs", node)
	}
	if !reflect.DeepEqual(want.WireGuard, got.WireGuard) {
		t.Errorf("%s: the WireGuard interface differs:\n%+v\n%+v", node, want.WireGuard, got.WireGuard)
	}
	if !reflect.DeepEqual(want.Units, got.Units) {
		t.Errorf("%s: the units differ", node)
	}
	paths := func(p *Plan) (out []string) {
		for _, f := range p.Files {
			out = append(out, f.Path)
		}
		return out
	}
	if !slices.Equal(paths(want), paths(got)) {
		t.Fatalf("%s: files %v, from the view %v", node, paths(want), paths(got))
	}
	for i, w := range want.Files {
		g := got.Files[i]
		if w.Mode != g.Mode || w.Owner != g.Owner || w.Group != g.Group {
			t.Errorf("%s: %s: mode or owner differs", node, w.Path)
		}
		switch w.Path {
		case SiteFilePath:
			continue
		case SSHKnownHostsPath:
			var names []string
			for _, n := range view.Nodes {
				names = append(names, n.Name)
			}
			for _, line := range strings.Split(string(g.Content), "\n") {
				if !strings.HasPrefix(line, "@cert-authority ") {
					continue
				}
				pats := strings.Split(strings.Fields(line)[1], ",")
				for _, p := range pats {
					if !strings.Contains(string(w.Content), p) {
						t.Errorf("%s: known_hosts from the view names %q, the site's does not", node, p)
					}
				}
				for _, n := range names {
					if !slices.Contains(pats, n) {
						t.Errorf("%s: known_hosts from the view lacks node %q", node, n)
					}
				}
			}
			continue
		}
		if !bytes.Equal(w.Content, g.Content) {
			t.Errorf("%s: %s differs from the view's:\n%s", node, w.Path, diffText(string(w.Content), string(g.Content)))
		}
	}
}

// diffText is the first line where a and b differ.
func diffText(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d: %q / %q", i+1, x, y)
		}
	}
	return ""
}

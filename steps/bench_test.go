package steps

import (
	"fmt"
	"strings"
	"testing"
)

// bigSite is a valid site of n nodes in a ring, each a peer of the next,
// with one service and one database per ten nodes.
func bigSite(n int) []byte {
	var b strings.Builder
	b.WriteString("version: 1\nsite: big\nssh: {users: [{name: alice, principals: [root]}]}\nwireguard: {network: 10.100.0.0/16}\nnodes:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: n%d, endpoint: \"192.0.2.%d:51820\", peers: [n%d]}\n", i, i%250+1, (i+1)%n)
	}
	b.WriteString("firewall: {public_tcp: [443]}\nclients: [{name: worker}]\nservices:\n")
	for i := 0; i < n; i += 10 {
		fmt.Fprintf(&b, "  - {name: s%d, node: n%d, server_name: s%d.example.com, upstream: \"http://127.0.0.1:8080\", allow: [worker]}\n", i, i, i)
	}
	b.WriteString("databases:\n")
	for i := 0; i < n; i += 10 {
		fmt.Fprintf(&b, "  - {name: d%d, node: n%d, engine: postgresql, clients: [n%d]}\n", i, i, (i+1)%n)
	}
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	for _, tc := range []struct {
		name string
		data []byte
	}{{"example", ExampleYAML}, {"50-nodes", bigSite(50)}, {"500-nodes", bigSite(500)}} {
		b.Run(tc.name, func(b *testing.B) {
			if _, err := Parse(tc.data, tc.name); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(tc.data)))
			for b.Loop() {
				if _, err := Parse(tc.data, tc.name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBuildPlan builds one node's plan in sites of 10, 100 and 1,000
// nodes, each node with 10 peers, 5 services and a database, with the
// site's shared work done once (NewBuilder), as rendering every node does.
// It reports the node's firewall rule count, which must stay flat.
func BenchmarkBuildPlan(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("%d-nodes", n), func(b *testing.B) {
			site, _ := fwSite(b, fwShape{nodes: n, peers: 10, servicesEvery: 1, services: 5, dbEvery: 1, dbClients: 5})
			node := fmt.Sprintf("n%d", n/2)
			sec := fixedSecrets(b, site, node)
			builder, err := NewBuilder(site)
			if err != nil {
				b.Fatal(err)
			}
			var p *Plan
			for b.Loop() {
				if p, err = builder.Plan(node, sec, goldenNow); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Firewall.RuleCount()), "rules")
			b.ReportMetric(float64(len(p.WireGuard.Config.Peers)), "peers")
		})
	}
}
